#!/usr/bin/env bash
# DDP check on a node with 2 GPUs: the same optimizer steps (64 x 1024 tokens, the same batches) on 1 GPU and on
# 2 GPUs (torchrun, gradient accumulation halves). Expect equal losses within bf16 noise and ~2x tokens/s.
# Results in $OUT (summary.* with val_loss_diff_vs_first and speedup_vs_first).
#   OUT=gpu_ddp_out STEPS=100 bash benchmarks/gpu_llm_ddp_check.sh
#   TINY=1 OUT=/tmp/ddp_out bash benchmarks/gpu_llm_ddp_check.sh    # CPU smoke test (gloo)
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout's harmonic package (not installed there)
cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu_ddp_out}"
PYTHON="${PYTHON:-python}"
STEPS="${STEPS:-100}"
HEADS="${HEADS:-baseline euclidean}"
mkdir -p "$OUT"
{ nvidia-smi || true; "$PYTHON" -c "import torch; print('torch', torch.__version__, 'gpus', torch.cuda.device_count())"; } > "$OUT/environment.txt" 2>&1
if [ "${TINY:-0}" = "1" ]; then
  EXTRA=(--tiny --steps "${TINY_STEPS:-4}" --sequences 4 --micro-batch 1 --eval-interval 2 --eval-iters 2 --no-compile)
else
  EXTRA=(--steps "$STEPS" --sequences 64 --micro-batch "${MICRO_BATCH:-16}" --eval-interval 50)
fi
# shellcheck disable=SC2086
"$PYTHON" benchmarks/gpu_llm_check.py --out "$OUT" --data "${DATA:-data/shakespeare}" --gpus 1 2 --heads $HEADS "${EXTRA[@]}" 2>&1 | tee "$OUT/check.log"
