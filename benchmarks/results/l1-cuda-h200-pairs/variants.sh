#!/usr/bin/env bash
# canberra's forward variants, one build and time_variant.py each, on the device machine's copy of the tree (it
# edits l1_kernels.cuh there, starting from the committed source each time). Usage, from the repository root:
#   bash benchmarks/results/l1-cuda-h200-pairs/variants.sh pairs per_feature pairs_1block pairs_share6
#   pairs         the committed kernels: two features per reciprocal where the tile is in range
#   per_feature   the tiles never take the pairs (one reciprocal per feature, 20 of 64 on the FMA pipe: before)
#   pairs_1block  pairs, the canberra forward at one block of 255 registers per SM instead of two of 128
#   pairs_shareN  pairs, N of each thread's 64 pair reciprocals on the FMA pipe (fma_rcp)
set -uo pipefail
source benchmarks/l1_cuda_variants.sh

edit() {
    case "$1" in
        pairs) ;;
        per_feature) sed -i 's/if (canberra_tile_in_range(aa, bb, n, v, row0, col0)) {/if (false) {/' "$2" ;;
        pairs_1block) sed -i 's/return two_accumulators(kind) ? 1 : 2; }/return two_accumulators(kind) || kind == CANBERRA ? 1 : 2; }/' "$2" ;;
        pairs_share*) sed -i "s/A\[i\]\[j\] = fmaf(num, fast_rcp(s1 \* s2), A\[i\]\[j\]);/A[i][j] = fmaf(num, fma_slot(i, j, ${1#pairs_share}) ? fma_rcp(s1 * s2) : fast_rcp(s1 * s2), A[i][j]);/" "$2" ;;
        *) return 1 ;;
    esac
}

l1_cuda_variants benchmarks/results/l1-cuda-h200-pairs/time_variant.py edit "$@"
