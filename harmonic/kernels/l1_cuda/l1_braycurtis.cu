// BRAYCURTIS (bray_curtis): l1_kernels.cuh.
#include "l1_kernels.cuh"

namespace l1cuda::family {

cudaError_t forward_braycurtis(const Problem& p, Partials& out, cudaStream_t stream) {
    return forward_kind<BRAYCURTIS>(p, out, stream);
}

cudaError_t backward_braycurtis(const Problem& p, const Grads& grads, cudaStream_t stream) {
    return backward_kind<BRAYCURTIS>(p, grads, stream);
}

}  // namespace l1cuda::family
