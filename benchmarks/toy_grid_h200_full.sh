#!/bin/bash
# The whole faithful toy grid of presets/paper.yaml on one H200, longer than one device call (10 minutes): start it
# with setsid so it outlives the call, then poll from later calls (the machine stays warm 30 s after each call).
#   call 1:  setsid nohup bash benchmarks/toy_grid_h200_full.sh >/tmp/full.log 2>&1 </dev/null &
#   later:   bash benchmarks/toy_grid_h200_full.sh poll 570      (waits up to 570 s; copies the pack to $OUT when done)
# MLP groups (and the two-point toy) train first while the transformer groups compile in other processes (inductor's
# on-disk cache), then the transformer groups train; one training process at a time, so the GPU is not time-sliced.
# MLP_ONLY / TRANSFORMER_ONLY (toy_grid.py --only filters) select each part's cells; an empty MLP_ONLY skips the MLP
# part (the transformer warm-up then runs alone in WARM processes), e.g. the transformer cells a deadline stopped:
#   MLP_ONLY= TRANSFORMER_ONLY="setting=faithful model=transformer study=data_efficiency,n_sweep" WARM=15 \
#     TRANSFORMER_DEADLINE=1500 setsid nohup bash benchmarks/toy_grid_h200_full.sh >/tmp/full.log 2>&1 </dev/null &
set -u
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout's harmonic package (not installed there)
RUN=/tmp/toy-grid-full
MLP_ONLY=${MLP_ONLY-setting=faithful model=mlp,layer}
TRANSFORMER_ONLY=${TRANSFORMER_ONLY-setting=faithful model=transformer}
if [ "${1:-}" = poll ]; then
  end=$((SECONDS + ${2:-570}))
  while [ ! -f $RUN/done ] && [ $SECONDS -lt $end ]; do sleep 5; done
  grep -Ev "^W[0-9]{4} |UserWarning|warnings.warn|^ +warnings|^$" /tmp/full.log | tail -n 25
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  if [ -f $RUN/done ]; then
    tar -cf "$OUT/toy-grid-faithful.tar" -C $RUN pack-mlp pack-transformer full.log.gz 2>/dev/null
    ls -la "$OUT"
  fi
  exit 0
fi
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_COMPILE_THREADS=1
rm -rf $RUN  # a machine can come back with an earlier run's files in /tmp
mkdir -p $RUN/pack-mlp $RUN/pack-transformer
grid() { python3 benchmarks/toy_grid.py --config presets/paper.yaml --device cuda --compile "$@"; }
t0=$SECONDS
echo "start $(date -u +%T) $(git rev-parse --short HEAD 2>/dev/null) torch $(python3 -c 'import torch; print(torch.__version__)')"
if [ -n "$MLP_ONLY" ]; then
  # shellcheck disable=SC2086  # the filters are several KEY=VALUE words
  grid --warm 14 --deadline "${MLP_DEADLINE:-600}" --only $MLP_ONLY --out $RUN/mlp >$RUN/mlp.log 2>&1 &
  mlp=$!
  until grep -q "compile warm-up done" $RUN/mlp.log 2>/dev/null || ! kill -0 $mlp 2>/dev/null; do sleep 2; done
  echo "mlp warm-up done at $((SECONDS - t0)) s; transformer warm-up starts"
fi
# shellcheck disable=SC2086
grid --warm "${WARM:-12}" --warm-only --only $TRANSFORMER_ONLY --out $RUN/transformer >$RUN/tw.log 2>&1
echo "transformer warm-up exit $? at $((SECONDS - t0)) s"
if [ -n "$MLP_ONLY" ]; then
  wait $mlp
  echo "mlp run exit $? at $((SECONDS - t0)) s"
  python3 benchmarks/toy_grid_pack.py $RUN/mlp $RUN/pack-mlp
fi
# shellcheck disable=SC2086
grid --deadline "${TRANSFORMER_DEADLINE:-660}" --only $TRANSFORMER_ONLY --out $RUN/transformer \
  >$RUN/transformer.log 2>&1
echo "transformer run exit $? at $((SECONDS - t0)) s"
python3 benchmarks/toy_grid_pack.py $RUN/transformer $RUN/pack-transformer
cat $RUN/*.log | grep -Ev "UserWarning|warnings.warn" | gzip >$RUN/full.log.gz
echo "done at $((SECONDS - t0)) s"
touch $RUN/done
