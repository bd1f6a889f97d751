// MINKOWSKI (minkowski p != 1, 2: p = 3 and p = 1.5 in closed form, any other p through exp2 / log2) and CANBERRA
// (canberra): l1_kernels.cuh.
#include "l1_kernels.cuh"

namespace {

// The kind and, for MINKOWSKI, the power code: one choice for both directions.
template <typename Launch>
cudaError_t run_power(const Launch& launch) {
    if (launch.p.kind == CANBERRA) return launch.template run<CANBERRA>();
    switch (l1cuda::power_code(launch.p.p)) {
        case 3:
            return launch.template run<MINKOWSKI, 3>();
        case 15:
            return launch.template run<MINKOWSKI, 15>();
        default:
            return launch.template run<MINKOWSKI, 0>();
    }
}

}  // namespace

namespace l1cuda::family {

cudaError_t forward_power(const Problem& p, Partials& out, cudaStream_t stream) {
    return run_power(ForwardLaunch{p, out, stream});
}

cudaError_t backward_power(const Problem& p, const Grads& grads, cudaStream_t stream) {
    return run_power(BackwardLaunch{p, grads, stream});
}

}  // namespace l1cuda::family
