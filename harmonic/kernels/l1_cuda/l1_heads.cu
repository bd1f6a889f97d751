// Entry points of the CUDA L1 kernels (declared in l1_heads.h): dispatch on the kind to the kernel families of
// l1_sign.cu, l1_braycurtis.cu, l1_maximum.cu and l1_power.cu (separate files so nvcc builds them in parallel).
#include "l1_kernels.cuh"

namespace l1cuda {

int power_code(float p) { return p == 3.0f ? 3 : (p == 1.5f ? 15 : 0); }

bool can_keep_sums(int kind) { return kind == MANHATTAN || kind == BRAYABS; }

int coefficient_arrays(int kind) { return g_arrays(kind); }

int padded_classes(int v) { return cdiv(v, TILE) * TILE; }

int chunk_rows(int n, int v, int kind, long max_g_bytes) {
    const long row_bytes = 4L * padded_classes(v) * g_arrays(kind);
    const long max_rows = std::max<long>(TILE, max_g_bytes / row_bytes / TILE * TILE);
    return cdiv(cdiv(n, cdiv(n, max_rows)), TILE) * TILE;
}

cudaError_t forward(const Problem& p, Partials& out, cudaStream_t stream) {
    if (out.sums != nullptr && !can_keep_sums(p.kind)) return cudaErrorInvalidValue;
    switch (p.kind) {
        case MANHATTAN:
        case BRAYABS:
            return family::forward_sign(p, out, stream);
        case BRAYCURTIS:
            return family::forward_braycurtis(p, out, stream);
        case CHEBYSHEV:
        case SMOOTH:
            return family::forward_maximum(p, out, stream);
        case MINKOWSKI:
        case CANBERRA:
            return family::forward_power(p, out, stream);
        default:
            return cudaErrorInvalidValue;
    }
}

cudaError_t backward(const Problem& p, const Grads& grads, cudaStream_t stream) {
    if (grads.sums != nullptr && !can_keep_sums(p.kind)) return cudaErrorInvalidValue;  // kept sums: 1 accumulator
    switch (p.kind) {
        case MANHATTAN:
        case BRAYABS:
            return family::backward_sign(p, grads, stream);
        case BRAYCURTIS:
            return family::backward_braycurtis(p, grads, stream);
        case CHEBYSHEV:
        case SMOOTH:
            return family::backward_maximum(p, grads, stream);
        case MINKOWSKI:
        case CANBERRA:
            return family::backward_power(p, grads, stream);
        default:
            return cudaErrorInvalidValue;
    }
}

}  // namespace l1cuda
