// MINKOWSKI (minkowski p != 1, 2: p = 3 and p = 1.5 in closed form, any other p through exp2 / log2) and CANBERRA
// (canberra): l1_kernels.cuh.
#include "l1_kernels.cuh"

namespace l1cuda::family {

cudaError_t forward_power(const Problem& p, Partials& out, cudaStream_t stream) {
    if (p.kind == CANBERRA) return forward_kind<CANBERRA>(p, out, stream);
    switch (power_code(p.p)) {
        case 3:
            return forward_kind<MINKOWSKI, 3>(p, out, stream);
        case 15:
            return forward_kind<MINKOWSKI, 15>(p, out, stream);
        default:
            return forward_kind<MINKOWSKI, 0>(p, out, stream);
    }
}

cudaError_t backward_power(const Problem& p, const Grads& grads, cudaStream_t stream) {
    if (p.kind == CANBERRA) return backward_kind<CANBERRA>(p, grads, stream);
    switch (power_code(p.p)) {
        case 3:
            return backward_kind<MINKOWSKI, 3>(p, grads, stream);
        case 15:
            return backward_kind<MINKOWSKI, 15>(p, grads, stream);
        default:
            return backward_kind<MINKOWSKI, 0>(p, grads, stream);
    }
}

}  // namespace l1cuda::family
