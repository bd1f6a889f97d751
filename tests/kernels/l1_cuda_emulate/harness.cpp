// C entry points for test_l1_cuda_emulated.py (ctypes) around l1cuda::forward / l1cuda::backward, host-compiled
// with -DL1_EMULATE together with harmonic/kernels/l1_cuda/l1_*.cu.
#include "emulate.h"  // before the header: it stands in for cuda_runtime.h
#include "../../../harmonic/kernels/l1_cuda/l1_heads.h"
#include "../../../harmonic/kernels/l1_cuda/l1_kernels.cuh"  // its device functions, for emu_fma_functions

extern "C" {

// out_splits: the number of splits; with m == nullptr only that is computed.
int emu_forward(const void* a, const void* b, const float* aa, const float* bb, const int* y, int n, int v, int d,
                int kind, int bf16, int vec, float n_exp, float eps, float scale, float pw, float alpha, float* m,
                float* s, float* zsum, float* zt, float* sums, int* out_splits) {
    const l1cuda::Problem p{a, b, aa, bb, y, n, v, d, kind, bf16 != 0, vec != 0, n_exp, eps, scale, 0.0f, pw, alpha};
    l1cuda::Partials parts;
    parts.splits = *out_splits;
    parts.m = m, parts.s = s, parts.zsum = zsum, parts.zt = zt, parts.sums = sums;
    const int error = l1cuda::forward(p, parts, nullptr);
    *out_splits = parts.splits;
    return error;
}

int emu_chunk_rows(int n, int v, int kind, long max_g_bytes) { return l1cuda::chunk_rows(n, v, kind, max_g_bytes); }
void emu_set_smem_per_block(int bytes) { emulate_smem_per_block = bytes; }
int emu_smem_launches() { return emulate_smem_launches; }
int emu_smooth_fallbacks() { return emulate_smooth_fallbacks; }
int emu_canberra_fallbacks() { return emulate_canberra_fallbacks; }
int emu_coefficient_arrays(int kind) { return l1cuda::coefficient_arrays(kind); }
int emu_kept_arrays(int kind) { return l1cuda::kept_arrays(kind); }
int emu_padded_classes(int v) { return l1cuda::padded_classes(v); }

int emu_backward(const void* a, const void* b, const float* aa, const float* bb, const int* y, int n, int v, int d,
                 int kind, int bf16, int vec, float n_exp, float eps, float scale, float smoothing, float pw,
                 float alpha, const float* lse, const float* gw, float* g, int chunk_rows, float* dx, float* dw,
                 float* daa, float* dbb, const float* sums, int fused) {
    const l1cuda::Problem p{a, b, aa, bb, y, n, v, d, kind, bf16 != 0, vec != 0, n_exp, eps, scale, smoothing, pw,
                            alpha};
    const l1cuda::Grads grads{lse, gw, g, chunk_rows, dx, dw, daa, dbb, sums, fused != 0};
    return l1cuda::backward(p, grads, nullptr);
}

// The FMA-pipe special functions over an array (their accuracy test); which: 0 fma_rcp, 1 fma_ex2.
void emu_fma_functions(int which, const float* in, float* out, int n) {
    for (int i = 0; i < n; ++i) out[i] = which == 0 ? fma_rcp(in[i]) : fma_ex2(in[i]);
}
}
