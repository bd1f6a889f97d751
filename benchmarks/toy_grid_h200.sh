#!/bin/bash
# One device call of the toy grid on an H200 (the device tool allows 10 minutes a call), as run for
# benchmarks/results/toy-grid-h200/: compile warm-up in WARM processes, then one process trains every selected
# group (a CUDA stream each); cells still running at DEADLINE seconds are written with status failed; the results
# are packed into $OUT (at most 8 files of 16 MiB come back).
#   ONLY="model=mlp study=grid" WARM=10 DEADLINE=420 bash benchmarks/toy_grid_h200.sh
# The tool sends the session's checkout, not a helper's worktree: copy the branch into an ignored folder of that
# checkout (git archive HEAD | tar -x -C <checkout>/.copy), carry it, and cd into it first.
set -u
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout's harmonic package (not installed there)
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_COMPILE_THREADS=1
RUN=/tmp/toy-grid
rm -rf $RUN  # a machine can come back with an earlier run's files in /tmp
# shellcheck disable=SC2086  # ONLY holds several KEY=VALUE words
timeout $((${DEADLINE:-420} + 90)) python3 benchmarks/toy_grid.py --config presets/paper.yaml --device cuda --compile \
  --warm "${WARM:-10}" --deadline "${DEADLINE:-420}" --only ${ONLY:-} --out $RUN >/tmp/toy-grid.log 2>&1
echo "toy_grid.py exit status $?"
grep -Ev "^W[0-9]{4} |UserWarning|warnings.warn" /tmp/toy-grid.log | tail -n 30
if [ -f $RUN/timing.json ]; then python3 benchmarks/toy_grid_pack.py $RUN "$OUT"; fi
grep -Ev "UserWarning|warnings.warn" /tmp/toy-grid.log | gzip >"$OUT/toy-grid.log.gz"
