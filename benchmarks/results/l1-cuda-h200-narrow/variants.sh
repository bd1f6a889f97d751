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
source benchmarks/l1_cuda_variants.sh
choice='return kind == CANBERRA || (kind == MINKOWSKI \&\& p != 3) ? 4 : 8;'  # fused_cols' body, as committed

edit() {
    case "$1" in
        committed) ;;
        wide) sed -i "s/$choice/return 8;/" "$2" ;;
        narrow) sed -i "s/$choice/return 4;/" "$2" ;;
        canberra_unroll*) sed -i "s/(kind == CANBERRA ? 1 :/(kind == CANBERRA ? ${1#canberra_unroll} :/" "$2" ;;
        *) return 1 ;;
    esac
    grep -n -A1 "constexpr int fused_cols" "$2"
    grep -n "kind == CANBERRA ? [0-9]" "$2"
}

l1_cuda_variants benchmarks/results/l1-cuda-h200-narrow/time_variant.py edit "$@"
