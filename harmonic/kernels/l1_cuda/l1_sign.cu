// MANHATTAN (manhattan, minkowski p = 1, hamming_soft) and BRAYABS (bray_curtis_abs): l1_kernels.cuh.
#include "l1_kernels.cuh"

namespace l1cuda::family {

cudaError_t forward_sign(const Problem& p, Partials& out, cudaStream_t stream) {
    return p.kind == MANHATTAN ? forward_kind<MANHATTAN>(p, out, stream) : forward_kind<BRAYABS>(p, out, stream);
}

cudaError_t backward_sign(const Problem& p, const Grads& grads, cudaStream_t stream) {
    return p.kind == MANHATTAN ? backward_kind<MANHATTAN>(p, grads, stream) : backward_kind<BRAYABS>(p, grads, stream);
}

}  // namespace l1cuda::family
