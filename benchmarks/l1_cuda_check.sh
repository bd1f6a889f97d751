#!/usr/bin/env bash
# Usage: OUT=<dir> bash benchmarks/l1_cuda_check.sh   (one H100/H200, from any folder; see benchmarks/l1_cuda_check.py)
# Builds the CUDA L1 kernels, checks them, times them next to CE and the Triton kernels; about 7 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
PYTHONPATH=. PYTHONUNBUFFERED=1 timeout 570 "${PYTHON:-python3}" benchmarks/l1_cuda_check.py --out "$OUT" --budget-s 520 \
    2>&1 | tee "$OUT/run.log"
