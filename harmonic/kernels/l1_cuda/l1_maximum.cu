// CHEBYSHEV (chebyshev) and SMOOTH (chebyshev_smooth): l1_kernels.cuh.
#include "l1_kernels.cuh"

namespace l1cuda::family {

cudaError_t forward_maximum(const Problem& p, Partials& out, cudaStream_t stream) {
    return run_either<CHEBYSHEV, SMOOTH>(ForwardLaunch{p, out, stream});
}

cudaError_t backward_maximum(const Problem& p, const Grads& grads, cudaStream_t stream) {
    return run_either<CHEBYSHEV, SMOOTH>(BackwardLaunch{p, grads, stream});
}

}  // namespace l1cuda::family
