// MANHATTAN (manhattan, minkowski p = 1, hamming_soft) and BRAYABS (bray_curtis_abs): l1_kernels.cuh.
#include "l1_kernels.cuh"

namespace l1cuda::family {

cudaError_t forward_sign(const Problem& p, Partials& out, cudaStream_t stream) {
    return run_either<MANHATTAN, BRAYABS>(ForwardLaunch{p, out, stream});
}

cudaError_t backward_sign(const Problem& p, const Grads& grads, cudaStream_t stream) {
    return run_either<MANHATTAN, BRAYABS>(BackwardLaunch{p, grads, stream});
}

}  // namespace l1cuda::family
