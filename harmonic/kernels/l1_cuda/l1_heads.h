// Launchers of the CUDA L1 kernels (l1_heads.cu), called by the PyTorch binding (l1_binding.cpp). Plain pointers:
// every array is contiguous, on the current device; a and b are both bf16 (bf16 = true) or both fp32.
#pragma once

#ifndef L1_EMULATE
#include <cuda_runtime.h>
#endif

namespace l1cuda {

constexpr int MANHATTAN = 0;  // kind codes of harmonic/kernels/l1_heads.py
constexpr int BRAYABS = 6;

struct Problem {
    const void* a;    // N x D
    const void* b;    // V x D
    const float* aa;  // N: bray_curtis_abs sum |x| (zeros otherwise)
    const float* bb;  // V: bray_curtis_abs sum |w|
    const int* y;     // N targets (ignored rows: any value outside [0, V))
    int n, v, d, kind;
    bool bf16, vec;   // vec: rows of a and b are 16-byte aligned (D % 8 == 0, aligned bases)
    float n_exp, eps, scale, smoothing;
};

struct Partials {  // per-split row statistics, each splits x N (see _loss.finish_rows)
    int splits = 0;
    float *m = nullptr, *s = nullptr, *zsum = nullptr, *zt = nullptr;
    float* sums = nullptr;  // N x padded_classes(V): the per-pair sum |x - w| for the backward; nullptr: not kept
};

struct Grads {
    const float* lse;  // N
    const float* gw;   // N: dLoss/dloss_i (0 on ignored rows)
    float* g;          // chunk_rows x padded_classes(V) scratch
    int chunk_rows;
    float *dx, *dw;    // N x D, V x D, zeroed; nullptr: not needed
    float *daa, *dbb;  // N, V, zeroed (bray_curtis_abs)
    const float* sums;  // the forward's Partials::sums, or nullptr: recompute them
};

int padded_classes(int v);
int chunk_rows(int n, int v, long max_g_bytes);
// With out.m == nullptr: sets out.splits only (the caller then allocates the partials and calls again).
cudaError_t forward(const Problem& p, Partials& out, cudaStream_t stream);
cudaError_t backward(const Problem& p, const Grads& grads, cudaStream_t stream);

}  // namespace l1cuda
