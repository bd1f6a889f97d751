#!/usr/bin/env bash
# Usage: bash benchmarks/l1_profile.sh OUT_DIR   (GPU; see benchmarks/l1_profile.py)
set -euo pipefail
cd "$(dirname "$0")/.." && mkdir -p "${1:?usage: l1_profile.sh OUT_DIR}"
PYTHONPATH=. PYTHONUNBUFFERED=1 "${PYTHON:-python}" benchmarks/l1_profile.py --out "$1" 2>&1 | tee "$1/l1_profile.log"
