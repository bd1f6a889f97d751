#!/usr/bin/env bash
# canberra's FMA-pipe shares of the reciprocal (forward FMA_SHARE_RCP, fused backward FMA_SHARE_RCP_BACKWARD, of
# each thread's 64 pairs): one build and time_head.py per setting, on the device machine's copy of the tree (it
# edits l1_kernels.cuh there). Usage, from the repository root: bash benchmarks/results/l1-cuda-h200-factors/canberra-shares/shares.sh "20 0" "20 8" ...
set -uo pipefail
here=benchmarks/results/l1-cuda-h200-factors/canberra-shares
src=harmonic/kernels/l1_cuda/l1_kernels.cuh
for pair in "$@"; do
    set -- $pair
    sed -i -E "s/^constexpr int FMA_SHARE_RCP = [0-9]+,/constexpr int FMA_SHARE_RCP = $1,/; s/^constexpr int FMA_SHARE_RCP_BACKWARD = [0-9]+;/constexpr int FMA_SHARE_RCP_BACKWARD = $2;/" "$src"
    grep -E "^constexpr int FMA_SHARE_RCP" "$src"
    HARMONIC_L1_CUDA=1 HARMONIC_L1_CUDA_BUILD=/tmp/l1_build_$1_$2 PYTHONPATH=. python3 "$here/time_head.py" canberra \
        | sed "s/^{/{\"forward_share\": $1, \"backward_share\": $2, /"
done
