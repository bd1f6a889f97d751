// BRAYCURTIS (bray_curtis): l1_kernels.cuh.
#include "l1_kernels.cuh"

namespace l1cuda::family {

cudaError_t forward_braycurtis(const Problem& p, Partials& out, cudaStream_t stream) {
    return ForwardLaunch{p, out, stream}.run<BRAYCURTIS>();
}

cudaError_t backward_braycurtis(const Problem& p, const Grads& grads, cudaStream_t stream) {
    return BackwardLaunch{p, grads, stream}.run<BRAYCURTIS>();
}

}  // namespace l1cuda::family
