// Launchers of the CUDA L1 kernels (l1_kernels.cuh, instantiated per kernel family in l1_*.cu), called by the
// PyTorch binding (l1_binding.cpp). Plain pointers: every array is contiguous, on the current device; a and b are
// both bf16 (bf16 = true) or both fp32.
#pragma once

#ifndef L1_EMULATE
#include <cuda_runtime.h>
#endif

namespace l1cuda {

// Kind codes of harmonic/kernels/l1_heads.py (the distance each kernel family computes; see l1_kernels.cuh).
constexpr int MANHATTAN = 0;
constexpr int MINKOWSKI = 1;
constexpr int CHEBYSHEV = 2;
constexpr int SMOOTH = 3;
constexpr int CANBERRA = 4;
constexpr int BRAYCURTIS = 5;
constexpr int BRAYABS = 6;

// MINKOWSKI's power p as a code for the cheap forms of |u|^p and |u|^(p - 1): 3 (p = 3: products), 15 (p = 1.5:
// one square root), 0 (any other p: exp2 / log2).
int power_code(float p);

struct Problem {
    const void* a;    // N x D
    const void* b;    // V x D
    const float* aa;  // N: bray_curtis_abs sum |x| (zeros otherwise)
    const float* bb;  // V: bray_curtis_abs sum |w|
    const int* y;     // N targets (ignored rows: any value outside [0, V))
    int n, v, d, kind;
    bool bf16, vec;   // vec: rows of a and b are 16-byte aligned (D % 8 == 0, aligned bases)
    float n_exp, eps, scale, smoothing;
    float p = 1.0f;      // MINKOWSKI
    float alpha = 1.0f;  // SMOOTH
};

struct Partials {  // per-split row statistics, each splits x N (see _loss.finish_rows)
    int splits = 0;
    float *m = nullptr, *s = nullptr, *zsum = nullptr, *zt = nullptr;
    float* sums = nullptr;  // kept_arrays(kind) x N x padded_classes(V): each pair's kept values for the backward
                            // (l1_kernels.cuh's kept_sum; bray_curtis: its two sums); nullptr: not kept
};

struct Grads {
    const float* lse;  // N
    const float* gw;   // N: dLoss/dloss_i (0 on ignored rows)
    float* g;          // chunk_rows x padded_classes(V) scratch, times coefficient_arrays(kind)
    int chunk_rows;
    float *dx, *dw;    // N x D, V x D, zeroed; nullptr: not needed
    float *daa, *dbb;  // N, V, zeroed (bray_curtis_abs)
    const float* sums;  // the forward's Partials::sums, or nullptr: recompute them
    bool fused = true;  // kinds other than the sign kinds, dx and dW both wanted: one sweep computes both
};

int kept_arrays(int kind);          // values per pair the forward can keep for the backward: 1, BRAYCURTIS 2
int coefficient_arrays(int kind);   // per-pair coefficient matrices the backward keeps (1 or 2)
int padded_classes(int v);
int chunk_rows(int n, int v, int kind, long max_g_bytes);
// With out.m == nullptr: sets out.splits only (the caller then allocates the partials and calls again).
cudaError_t forward(const Problem& p, Partials& out, cudaStream_t stream);
cudaError_t backward(const Problem& p, const Grads& grads, cudaStream_t stream);

}  // namespace l1cuda
