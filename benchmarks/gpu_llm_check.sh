#!/usr/bin/env bash
# GPU check (one GPU, offline, embedded corpus): GPT-2 124M with the CE, euclidean and cosine heads, STEPS steps of
# 64 x 1024 tokens, torch.compile, bf16. Records tokens/s, MFU, peak memory, loss curves and energy in $OUT
# (summary.json / .csv / .md + one folder per head). About 5-6 minutes on an H100 at the defaults.
#   OUT=gpu_out STEPS=200 bash benchmarks/gpu_llm_check.sh
#   TINY=1 OUT=/tmp/gpu_out bash benchmarks/gpu_llm_check.sh        # CPU smoke test of the script
# The machine needs torch (and numpy); tiktoken only if data/shakespeare is not prepared yet (copy it over
# otherwise), codecarbon only for energy, transformers not at all.
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout's harmonic package (not installed there)
cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu_out}"
PYTHON="${PYTHON:-python}"
STEPS="${STEPS:-200}"
HEADS="${HEADS:-baseline euclidean cosine}"
mkdir -p "$OUT"
{ nvidia-smi || true; "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } > "$OUT/environment.txt" 2>&1
if [ "${TINY:-0}" = "1" ]; then
  EXTRA=(--tiny --steps "${TINY_STEPS:-4}" --sequences 4 --micro-batch 2 --eval-interval 2 --eval-iters 1 --no-compile)
else
  EXTRA=(--steps "$STEPS" --sequences 64 --micro-batch "${MICRO_BATCH:-16}")
fi
# shellcheck disable=SC2086
"$PYTHON" benchmarks/gpu_llm_check.py --out "$OUT" --data "${DATA:-data/shakespeare}" --gpus 1 --heads $HEADS "${EXTRA[@]}" 2>&1 | tee "$OUT/check.log"
