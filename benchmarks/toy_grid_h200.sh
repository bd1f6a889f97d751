#!/bin/bash
# The paper's toy grid on one GPU machine, in calls of at most 10 minutes (the device tool's limit):
#   bash benchmarks/toy_grid_h200.sh start   # CUDA batching tests, then the grid in the background
#   bash benchmarks/toy_grid_h200.sh wait    # the next call: wait for it; packs the results into $OUT when done
# Either waits at most WAIT_S seconds (default 500). The run: benchmarks/toy_grid.py, PARTS worker processes.
set -u
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_COMPILE_THREADS=1
RUN=/tmp/toy-grid
if [ "$1" = start ]; then
  nvidia-smi -L
  python3 -m pytest -q -p no:cacheprovider --tb=short tests/toy/test_batched.py -k cuda 2>&1 | tail -15
  setsid nohup python3 benchmarks/toy_grid.py --config presets/paper.yaml --device cuda --compile \
    --parts "${PARTS:-10}" --out $RUN ${EXTRA:-} >/tmp/toy-grid.log 2>&1 </dev/null &
  sleep 2
fi
deadline=$(($(date +%s) + ${WAIT_S:-500}))
while [ ! -f $RUN/timing.json ] && [ "$(date +%s)" -lt "$deadline" ]; do
  sleep 15
  pgrep -f benchmarks/toy_grid.py >/dev/null || break
  echo "$(date +%T) $(grep -c queued /tmp/toy-grid.log) progress lines; last: $(grep queued /tmp/toy-grid.log | tail -1)"
done
tail -n 25 /tmp/toy-grid.log
if [ -f $RUN/timing.json ]; then python3 benchmarks/toy_grid_pack.py $RUN "$OUT"; fi
