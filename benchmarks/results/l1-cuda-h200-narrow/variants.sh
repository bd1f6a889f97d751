#!/usr/bin/env bash
# The fused dx / dW sweep at both thread tiles, one build and time_variant.py each, on the device machine's copy of
# the tree (it edits l1_kernels.cuh there, starting from the committed source each time). Usage, from the
# repository root:
#   bash benchmarks/results/l1-cuda-h200-narrow/variants.sh committed wide narrow
#   committed  the source as committed (fused_cols as it chooses per kind)
#   wide       every fused kind at 8 x 8 per thread, one block per SM (the kernels before)
#   narrow     every fused kind at 8 x 4 per thread, two blocks per SM
#   canberra_unrollN  committed, canberra's fused sweep with N centre steps unrolled per stage (grad_unroll: 1)
# HEADS="canberra ..." times only those heads (default: every fused head).
set -uo pipefail
here=benchmarks/results/l1-cuda-h200-narrow
src=harmonic/kernels/l1_cuda/l1_kernels.cuh
cp "$src" /tmp/l1_kernels.cuh.committed
pattern='constexpr int fused_cols(int kind, int p) {'
for variant in "$@"; do
    cp /tmp/l1_kernels.cuh.committed "$src"
    case "$variant" in
        committed) ;;
        wide) sed -i "s/$pattern.*/$pattern return 8; }/" "$src" ;;
        narrow) sed -i "s/$pattern.*/$pattern return 4; }/" "$src" ;;
        canberra_unroll*) sed -i "s/(kind == CANBERRA ? 1 :/(kind == CANBERRA ? ${variant#canberra_unroll} :/" "$src" ;;
        *) echo "unknown variant $variant"; continue ;;
    esac
    grep -n "$pattern\|kind == CANBERRA ? [0-9]" "$src"
    HARMONIC_L1_CUDA=1 HARMONIC_L1_CUDA_BUILD=/tmp/l1_build_$variant PYTHONPATH=. python3 "$here/time_variant.py" "$variant" ${HEADS:-}
done
cp /tmp/l1_kernels.cuh.committed "$src"
