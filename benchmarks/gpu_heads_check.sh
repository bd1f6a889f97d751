#!/usr/bin/env bash
# Fused harmonic heads on a GPU: correctness at real shapes, benchmark table, short training check.
# Usage (repository root, a CUDA GPU, torch + triton installed): bash benchmarks/gpu_heads_check.sh [out-dir]
# Writes <out-dir>/heads_benchmark.{json,md}; docs/performance.md quotes the .md.
set -euo pipefail
out="${1:-results/bench/heads}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
PYTHONPATH=. PYTHONUNBUFFERED=1 python3 benchmarks/heads_benchmark.py --out "$out" 2>&1 | tee "$out/log.txt"
