# Sourced by the variant scripts in benchmarks/results/*/variants.sh: builds and times one edited copy of the CUDA
# L1 kernels at a time, on the device machine's copy of the tree, from the repository root.
#   l1_cuda_variants <timer.py> <edit function> <variant> ...
# For each variant: restore the committed l1_kernels.cuh, call `<edit function> <variant> <file>` (it edits the file
# with sed, or returns non-zero for an unknown variant), build into its own folder (HARMONIC_L1_CUDA_BUILD) and run
# `python3 <timer.py> <variant> $HEADS`; the committed source is restored at the end.
l1_cuda_variants() {
    local timer=$1 edit=$2 variant
    shift 2
    local src=harmonic/kernels/l1_cuda/l1_kernels.cuh
    cp "$src" /tmp/l1_kernels.cuh.committed
    for variant in "$@"; do
        cp /tmp/l1_kernels.cuh.committed "$src"
        if ! "$edit" "$variant" "$src"; then
            echo "unknown variant $variant"
            continue
        fi
        git diff --stat -- "$src" | tail -1
        # shellcheck disable=SC2086  # HEADS: a list of head names, split on purpose
        HARMONIC_L1_CUDA=1 HARMONIC_L1_CUDA_BUILD="/tmp/l1_build_$variant" PYTHONPATH=. python3 "$timer" "$variant" ${HEADS:-}
    done
    cp /tmp/l1_kernels.cuh.committed "$src"
}
