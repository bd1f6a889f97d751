// Entry points of the CUDA L1 kernels (declared in l1_heads.h): dispatch on the kind to the kernel families of
// l1_sign.cu, l1_braycurtis.cu, l1_maximum.cu and l1_power.cu (separate files so nvcc builds them in parallel).
#include "l1_kernels.cuh"

namespace l1cuda {

int power_code(float p) { return p == 3.0f ? 3 : (p == 1.5f ? 15 : 0); }

int coefficient_arrays(int kind) { return g_arrays(kind); }

int padded_classes(int v) { return cdiv(v, TILE) * TILE; }

int chunk_rows(int n, int v, int kind, long max_g_bytes) {
    const long row_bytes = 4L * padded_classes(v) * g_arrays(kind);
    const long max_rows = std::max<long>(TILE, max_g_bytes / row_bytes / TILE * TILE);
    return cdiv(cdiv(n, cdiv(n, max_rows)), TILE) * TILE;
}

// The family of each kind's kernels (one l1_*.cu each); nullptr for an unknown kind.
struct Family {
    cudaError_t (*forward)(const Problem&, Partials&, cudaStream_t);
    cudaError_t (*backward)(const Problem&, const Grads&, cudaStream_t);
};

const Family* family_of(int kind) {
    static const Family sign{family::forward_sign, family::backward_sign};
    static const Family braycurtis{family::forward_braycurtis, family::backward_braycurtis};
    static const Family maximum{family::forward_maximum, family::backward_maximum};
    static const Family power{family::forward_power, family::backward_power};
    switch (kind) {
        case MANHATTAN:
        case BRAYABS:
            return &sign;
        case BRAYCURTIS:
            return &braycurtis;
        case CHEBYSHEV:
        case SMOOTH:
            return &maximum;
        case MINKOWSKI:
        case CANBERRA:
            return &power;
        default:
            return nullptr;
    }
}

// One value per pair (kept_sum), two for BRAYCURTIS (both of its sums); 0 for an unknown kind.
int kept_arrays(int kind) { return family_of(kind) == nullptr ? 0 : kept_values(kind); }

cudaError_t forward(const Problem& p, Partials& out, cudaStream_t stream) {
    const Family* f = family_of(p.kind);
    if (f == nullptr) return cudaErrorInvalidValue;
    return f->forward(p, out, stream);
}

cudaError_t backward(const Problem& p, const Grads& grads, cudaStream_t stream) {
    const Family* f = family_of(p.kind);
    if (f == nullptr) return cudaErrorInvalidValue;
    return f->backward(p, grads, stream);
}

}  // namespace l1cuda
