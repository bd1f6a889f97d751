#!/bin/bash
# The whole faithful toy grid of presets/paper.yaml on one H200, longer than one device call (10 minutes): start it
# with setsid so it outlives the call, then poll from later calls (the machine stays warm 30 s after each call).
#   call 1:  setsid nohup bash benchmarks/toy_grid_h200_full.sh >/tmp/full.log 2>&1 </dev/null &
#   later:   bash benchmarks/toy_grid_h200_full.sh poll 570      (waits up to 570 s; copies the pack to $OUT when done)
# MLP groups (and the two-point toy) train first while the transformer groups compile in other processes (inductor's
# on-disk cache), then the transformer groups train; one training process at a time, so the GPU is not time-sliced.
set -u
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout's harmonic package (not installed there)
RUN=/tmp/toy-grid-full
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
mkdir -p $RUN/pack-mlp $RUN/pack-transformer
grid() { python3 benchmarks/toy_grid.py --config presets/paper.yaml --device cuda --compile "$@"; }
t0=$SECONDS
echo "start $(date -u +%T) $(git rev-parse --short HEAD 2>/dev/null) torch $(python3 -c 'import torch; print(torch.__version__)')"
grid --warm 14 --deadline "${MLP_DEADLINE:-600}" --only setting=faithful model=mlp,layer --out $RUN/mlp >$RUN/mlp.log 2>&1 &
mlp=$!
until grep -q "compile warm-up done" $RUN/mlp.log 2>/dev/null || ! kill -0 $mlp 2>/dev/null; do sleep 2; done
echo "mlp warm-up done at $((SECONDS - t0)) s; transformer warm-up starts"
grid --warm 12 --warm-only --only setting=faithful model=transformer --out $RUN/transformer >$RUN/tw.log 2>&1
echo "transformer warm-up exit $? at $((SECONDS - t0)) s"
wait $mlp
echo "mlp run exit $? at $((SECONDS - t0)) s"
python3 benchmarks/toy_grid_pack.py $RUN/mlp $RUN/pack-mlp
grid --deadline "${TRANSFORMER_DEADLINE:-660}" --only setting=faithful model=transformer --out $RUN/transformer \
  >$RUN/transformer.log 2>&1
echo "transformer run exit $? at $((SECONDS - t0)) s"
python3 benchmarks/toy_grid_pack.py $RUN/transformer $RUN/pack-transformer
cat $RUN/mlp.log $RUN/tw.log $RUN/transformer.log | grep -Ev "UserWarning|warnings.warn" | gzip >$RUN/full.log.gz
echo "done at $((SECONDS - t0)) s"
touch $RUN/done
