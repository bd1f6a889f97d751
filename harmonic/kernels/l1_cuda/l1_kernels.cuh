// CUDA C++ kernels for the manhattan-type harmonic heads (manhattan, hamming_soft = manhattan of sigmoid bits / D,
// bray_curtis_abs): the loss -n log(d + eps) -> cross-entropy and its gradient, from x (N x D) and W (V x D),
// with explicit register tiles in both directions. Python side: harmonic/kernels/l1_cuda/__init__.py.
//
// Four kernels, all on the same block shape: 256 threads as 16 x 16, each thread owning an 8 x 8 register tile of a
// 128 x 128 block tile; the reduction axis is walked in steps of 16, staged through shared memory (two buffers, the
// next step's global loads in flight while the current step computes). A thread's 8 rows are ty*4 + {0..3} and
// 64 + ty*4 + {0..3} (likewise its 8 columns with tx), so its shared-memory reads are 16-byte vectors without bank
// conflicts.
//
//   forward   tile rows x centres, loop over features: acc += |x - w| (FADD + FADD with |.| operand modifier);
//             the finished tile folds into per-row log-sum-exp partials (one set per V split).
//   coeff     the same tile recomputed in the backward (or read back where the forward kept its sums); writes G[n, v] = dLoss/dd * dd/d(sum |u|) for a chunk of
//             rows (fp32; at most a configurable number of bytes, chunks walk over N), and for bray_curtis_abs
//             the row / column sums of the denominator's gradient.
//   grad_x    tile rows x features, loop over centres; grad_w: tile centres x features, loop over rows.
//             With s = (sign(x - w) + 1) / 2 in {0, 1/2, 1}:
//                 dx[n, k] = sum_v G[n, v] sign(x - w) = 2 sum_v G[n, v] s - sum_v G[n, v]
//                 dW[v, k] = -sum_n G[n, v] sign(x - w) = sum_n G[n, v] - 2 sum_n G[n, v] s
//             so sign(0) = 0 (torch's gradient of |u| at 0) comes out exactly (G is set to 0 for pairs whose
//             features all tie, x on a centre, where dLoss/dd ~ n / eps would swamp the two sums' rounding), and s
//             costs one instruction:
//             16-bit inputs are mapped to order-preserving integer keys kx, kw (exact in fp32), and
//             s = saturate(kx + (0.5 - kw)) (FADD.SAT), then acc = fma(G, s, acc): 2 instructions per triple.
//             fp32 inputs: s = saturate(fma(x - w, 2^126, 0.5)), 3 instructions; a difference below 2^-127 (both
//             operands below ~2^-126) gives an s between 0 and 1 instead of the exact step.
// Nothing of size N x V x D is ever formed; G is at most max_g_bytes. Accumulation is fp32 throughout.
// This file has no torch headers (fast to compile); l1_binding.cpp holds the PyTorch side.
#ifdef L1_EMULATE  // host build for tests/kernels/l1_cuda_emulate (a CPU stand-in for each CUDA built-in used)
#include "../../../tests/kernels/l1_cuda_emulate/emulate.h"
#define L1_LAUNCH(kernel, grid, stream, ...) emulate_launch(kernel, grid, __VA_ARGS__)
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define L1_LAUNCH(kernel, grid, stream, ...) kernel<<<grid, THREADS, 0, stream>>>(__VA_ARGS__)
#endif

#include <algorithm>
#include <cmath>

#include "l1_heads.h"

namespace {

constexpr int TILE = 128;     // block tile edge
constexpr int BK = 16;        // reduction-axis step per shared-memory stage
constexpr int THREADS = 256;  // 16 x 16 threads, 8 x 8 results each
using l1cuda::BRAYABS;  // kind codes of harmonic/kernels/l1_heads.py
using l1cuda::MANHATTAN;
constexpr float LOG2E = 1.4426950408889634f;

// Index (0..127) of a thread's i-th row (or column) inside the block tile: two runs of 4, 64 apart.
__device__ __forceinline__ int own(int t, int i) { return (i < 4 ? 0 : 64) + t * 4 + (i & 3); }

// ---- loading 8 consecutive elements of a row as fp32 values or as order keys ----------------------------------

// Order key of a 16-bit float (bf16): sign-magnitude bits -> integer in [-32767, 32767], -0 and +0 both 0, exact
// in fp32, so key(x) - key(w) has the sign of x - w and is 0 exactly when x == w.
__device__ __forceinline__ float key16(unsigned short bits) {
    int mag = bits & 0x7fff;
    return static_cast<float>((bits & 0x8000) ? -mag : mag);
}

__device__ __forceinline__ float bf16_value(unsigned short bits) {
    return __uint_as_float(static_cast<unsigned>(bits) << 16);
}

// out[e] = element e of src (e < valid; 0 beyond), as value or KEYS key. vec: src is 16-byte aligned.
template <typename T, bool KEYS>
__device__ __forceinline__ void load8(const T* src, int valid, bool vec, float out[8]) {
    if constexpr (sizeof(T) == 4) {
        if (vec && valid >= 8) {
            const float4 p = __ldg(reinterpret_cast<const float4*>(src));
            const float4 q = __ldg(reinterpret_cast<const float4*>(src) + 1);
            out[0] = p.x; out[1] = p.y; out[2] = p.z; out[3] = p.w;
            out[4] = q.x; out[5] = q.y; out[6] = q.z; out[7] = q.w;
        } else {
#pragma unroll
            for (int e = 0; e < 8; ++e) out[e] = e < valid ? src[e] : 0.0f;
        }
    } else {
        unsigned short raw[8];
        const unsigned short* s = reinterpret_cast<const unsigned short*>(src);
        if (vec && valid >= 8) {
            const uint4 p = __ldg(reinterpret_cast<const uint4*>(s));
            const unsigned words[4] = {p.x, p.y, p.z, p.w};
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                raw[2 * e] = words[e] & 0xffff;
                raw[2 * e + 1] = words[e] >> 16;
            }
        } else {
#pragma unroll
            for (int e = 0; e < 8; ++e) raw[e] = e < valid ? s[e] : 0;
        }
#pragma unroll
        for (int e = 0; e < 8; ++e) out[e] = KEYS ? key16(raw[e]) : bf16_value(raw[e]);
    }
}

// One element as value or key (the register tiles the grad kernels keep for their own rows / centres).
template <typename T, bool KEYS>
__device__ __forceinline__ float load1(const T* src) {
    if constexpr (sizeof(T) == 4) {
        return *src;
    } else {
        const unsigned short bits = *reinterpret_cast<const unsigned short*>(src);
        return KEYS ? key16(bits) : bf16_value(bits);
    }
}

// s = (sign(a - b) + 1) / 2 with b already stored as 0.5 - key(w) (KEYS) or as the value w (fp32 inputs).
template <bool KEYS>
__device__ __forceinline__ float step(float a, float b) {
    if constexpr (KEYS) {
        return __saturatef(a + b);
    } else {
        return __saturatef(fmaf(a - b, 0x1p126f, 0.5f));
    }
}

// ---- shared-memory staging of a 128 x 16 slice of a row-major (rows x cols) matrix, transposed ------------------

// Thread t loads row t % 128, columns (t / 128) * 8 .. + 8 of rows [row0, row0 + 128) x cols [c0, c0 + 16): one
// 16-byte load for bf16, two for fp32; stored transposed (dst[col][row]), conflict-free (a warp: 32 rows).
template <typename T, bool KEYS>
__device__ __forceinline__ void fetch_t(const T* m, int rows, int cols, int row0, int c0, bool vec, float r[8]) {
    const int row = row0 + (threadIdx.x & 127);
    const int col = c0 + (threadIdx.x >> 7) * 8;
    const int valid = row < rows ? min(8, cols - col) : 0;
    load8<T, KEYS>(m + static_cast<size_t>(row) * cols + col, valid, vec, r);
}

__device__ __forceinline__ void store_t(float (*dst)[TILE], const float r[8]) {
    const int row = threadIdx.x & 127;
    const int col = (threadIdx.x >> 7) * 8;
#pragma unroll
    for (int e = 0; e < 8; ++e) dst[col + e][row] = r[e];
}

// Thread t loads row (t / 16) of a 16-row slice, columns (t % 16) * 8 .. + 8 of a 128-column block: coalesced
// 16-row x 128-column slice stored as dst[row][col] (no transpose). KEYS_W: store 0.5 - key (the b of step()).
template <typename T, bool KEYS, bool HALF_MINUS>
__device__ __forceinline__ void fetch_n(const T* m, int rows, int cols, int row0, int c0, bool vec, float r[8]) {
    const int row = row0 + (threadIdx.x >> 4);
    const int col = c0 + (threadIdx.x & 15) * 8;
    const int valid = row < rows ? min(8, cols - col) : 0;
    load8<T, KEYS>(m + static_cast<size_t>(row) * cols + col, valid, vec, r);
    if constexpr (HALF_MINUS) {
#pragma unroll
        for (int e = 0; e < 8; ++e) r[e] = 0.5f - r[e];
    }
}

__device__ __forceinline__ void store_n(float (*dst)[TILE], const float r[8]) {
    float* p = &dst[threadIdx.x >> 4][(threadIdx.x & 15) * 8];
    reinterpret_cast<float4*>(p)[0] = make_float4(r[0], r[1], r[2], r[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(r[4], r[5], r[6], r[7]);
}

// G[row0 .. +16][c0 .. +128] (fp32, ld columns, padded so no bounds checks), the same slice shape as fetch_n.
__device__ __forceinline__ void fetch_g(const float* g, int ld, int row0, int c0, float r[8]) {
    const float4* p = reinterpret_cast<const float4*>(
        g + static_cast<size_t>(row0 + (threadIdx.x >> 4)) * ld + c0 + (threadIdx.x & 15) * 8);
    const float4 a = __ldg(p), b = __ldg(p + 1);
    r[0] = a.x; r[1] = a.y; r[2] = a.z; r[3] = a.w;
    r[4] = b.x; r[5] = b.y; r[6] = b.z; r[7] = b.w;
}

// G[row0 .. +128][c0 .. +16], thread t: row t % 128, columns (t / 128) * 8 .. + 8 (transposed by store_t).
__device__ __forceinline__ void fetch_g_t(const float* g, int ld, int row0, int c0, float r[8]) {
    const float4* p = reinterpret_cast<const float4*>(
        g + static_cast<size_t>(row0 + (threadIdx.x & 127)) * ld + c0 + (threadIdx.x >> 7) * 8);
    const float4 a = __ldg(p), b = __ldg(p + 1);
    r[0] = a.x; r[1] = a.y; r[2] = a.z; r[3] = a.w;
    r[4] = b.x; r[5] = b.y; r[6] = b.z; r[7] = b.w;
}

// The thread's 8 entries of a 128-vector in shared memory: own(t, 0..7).
__device__ __forceinline__ void read8(const float* v, int t, float out[8]) {
    const float4 a = *reinterpret_cast<const float4*>(v + t * 4);
    const float4 b = *reinterpret_cast<const float4*>(v + 64 + t * 4);
    out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
    out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
}

// ---- the pair tile: acc[i][j] = sum_k |a[row i, k] - b[col j, k]| -----------------------------------------------

struct alignas(16) PairSmem {
    float a[2][BK][TILE];  // a^T slice: [feature][row], two buffers
    float b[2][BK][TILE];  // b^T slice: [feature][centre]
};

template <typename T>
__device__ __forceinline__ void pair_sums(const T* a, const T* b, int n, int v, int d, int row0, int col0, bool vec,
                                          PairSmem& sm, float acc[8][8]) {
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
    float ra[8], rb[8];
    fetch_t<T, false>(a, n, d, row0, 0, vec, ra);
    fetch_t<T, false>(b, v, d, col0, 0, vec, rb);
    store_t(sm.a[0], ra);
    store_t(sm.b[0], rb);
    __syncthreads();
    for (int k0 = 0, buf = 0; k0 < d; k0 += BK, buf ^= 1) {
        const bool more = k0 + BK < d;
        if (more) {  // next slice in flight while this one computes
            fetch_t<T, false>(a, n, d, row0, k0 + BK, vec, ra);
            fetch_t<T, false>(b, v, d, col0, k0 + BK, vec, rb);
        }
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float av[8], bv[8];
            read8(sm.a[buf][kk], ty, av);
            read8(sm.b[buf][kk], tx, bv);
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] += fabsf(av[i] - bv[j]);
        }
        if (more) {
            store_t(sm.a[buf ^ 1], ra);
            store_t(sm.b[buf ^ 1], rb);
        }
        __syncthreads();
    }
}

// Distance from the accumulated |.| sum, as l1_heads.py's _finish (MANHATTAN: times scale; BRAYABS: over
// aa + bb, where den = 0 implies sum = 0).
template <int KIND>
__device__ __forceinline__ float distance(float sum, float aa, float bb, float scale) {
    if constexpr (KIND == MANHATTAN) {
        return sum * scale;
    } else {
        const float den = aa + bb;
        return sum / (den > 0.0f ? den : 1.0f);
    }
}

// The forward's per-pair sums kept for the backward (HARMONIC_L1_CUDA_STORE=1): N x ld fp32, rows < n only.
__device__ __forceinline__ void store_sums(float* sums, int ld, int n, int row0, int col0, const float acc[8][8]) {
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int row = row0 + own(ty, i);
        if (row >= n) continue;
        float* dst = sums + static_cast<size_t>(row) * ld + col0;
        reinterpret_cast<float4*>(dst + tx * 4)[0] = make_float4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
        reinterpret_cast<float4*>(dst + 64 + tx * 4)[0] = make_float4(acc[i][4], acc[i][5], acc[i][6], acc[i][7]);
    }
}

__device__ __forceinline__ void load_sums(const float* sums, int ld, int n, int row0, int col0, float acc[8][8]) {
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int row = row0 + own(ty, i);
        float4 lo = make_float4(0.0f, 0.0f, 0.0f, 0.0f), hi = lo;
        if (row < n) {
            const float* src = sums + static_cast<size_t>(row) * ld + col0;
            lo = __ldg(reinterpret_cast<const float4*>(src + tx * 4));
            hi = __ldg(reinterpret_cast<const float4*>(src + 64 + tx * 4));
        }
        acc[i][0] = lo.x; acc[i][1] = lo.y; acc[i][2] = lo.z; acc[i][3] = lo.w;
        acc[i][4] = hi.x; acc[i][5] = hi.y; acc[i][6] = hi.z; acc[i][7] = hi.w;
    }
}

// (max, sum of exp relative to it) pairs: combined, with the empty pair (-inf, 0) as identity.
__device__ __forceinline__ void lse_combine(float& m, float& s, float m2, float s2) {
    const float top = fmaxf(m, m2);
    if (top == -INFINITY) return;
    s = s * expf(m - top) + s2 * expf(m2 - top);
    m = top;
}

// ---- forward: per-row log-sum-exp partials --------------------------------------------------------------------

// Block (row block, split) walks the split's centre tiles; per tile each row's (max z, sum exp, sum z, z[target])
// is reduced over the 16 threads sharing the row (shuffles within a half-warp), and thread tx == i keeps row i's
// running statistics in registers. Outputs (splits x N each) are combined by _loss.finish_rows as the Triton
// kernels' are.
template <typename T, int KIND>
__global__ void __launch_bounds__(THREADS, 2)
forward_kernel(const T* __restrict__ a, const T* __restrict__ b, const float* __restrict__ aa,
               const float* __restrict__ bb, const int* __restrict__ y, float* __restrict__ m_out,
               float* __restrict__ s_out, float* __restrict__ zsum_out, float* __restrict__ zt_out,
               float* __restrict__ sums_out, int n, int v, int d, int tiles_per_split, float n_exp, float eps,
               float scale, bool vec) {
    __shared__ PairSmem sm;
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    const int row0 = blockIdx.x * TILE;
    const int split = blockIdx.y;
    const int first = split * tiles_per_split;
    const int last = min(first + tiles_per_split, (v + TILE - 1) / TILE);
    float run_m = -INFINITY, run_s = 0.0f, run_zsum = 0.0f, run_zt = 0.0f;  // row tx's state (tx < 8)
    float acc[8][8];
    for (int tile = first; tile < last; ++tile) {
        const int col0 = tile * TILE;
        pair_sums<T>(a, b, n, v, d, row0, col0, vec, sm, acc);
        if (sums_out != nullptr) store_sums(sums_out, (v + TILE - 1) / TILE * TILE, n, row0, col0, acc);
        int cols[8];
        float col_bb[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            cols[j] = col0 + own(tx, j);
            col_bb[j] = (KIND == BRAYABS && cols[j] < v) ? bb[cols[j]] : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            // per-row terms re-read each tile (L1 hits) rather than held in registers across the feature loop
            const int row = row0 + own(ty, i);
            const int label = row < n ? y[row] : -1;
            const float row_aa = (KIND == BRAYABS && row < n) ? aa[row] : 0.0f;
            float tm = -INFINITY, ts = 0.0f, tzsum = 0.0f, tzt = 0.0f;
            float z[8];
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                z[j] = -n_exp * logf(distance<KIND>(acc[i][j], row_aa, col_bb[j], scale) + eps);
                if (cols[j] < v) tm = fmaxf(tm, z[j]);
            }
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                if (cols[j] < v) {
                    ts += expf(z[j] - tm);
                    tzsum += z[j];
                    if (cols[j] == label) tzt += z[j];
                }
            }
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) {  // the 16 threads of a row share a half-warp
                const float om = __shfl_xor_sync(0xffffffffu, tm, off);
                const float os = __shfl_xor_sync(0xffffffffu, ts, off);
                lse_combine(tm, ts, om, os);
                tzsum += __shfl_xor_sync(0xffffffffu, tzsum, off);
                tzt += __shfl_xor_sync(0xffffffffu, tzt, off);
            }
            if (tx == i) {
                lse_combine(run_m, run_s, tm, ts);
                run_zsum += tzsum;
                run_zt += tzt;
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int row = row0 + own(ty, i);
        if (tx == i && row < n) {
            const size_t out = static_cast<size_t>(split) * n + row;
            m_out[out] = run_m;
            s_out[out] = run_s;
            zsum_out[out] = run_zsum;
            zt_out[out] = run_zt;
        }
    }
}

// ---- backward, step 1: the coefficients G of a chunk of rows ---------------------------------------------------

// One 128 x 128 tile per block: recompute the distances, then as _loss.grad_wrt_distance and l1_heads.py's
// _pair_coefficients: gd = g_i (p - target) (-n / (d + eps)); G = gd * scale (MANHATTAN) or gd / den (BRAYABS,
// which also adds the denominator's gradient c2 = -gd sum / den^2 to daa[row] and dbb[col]). G rows are relative
// to the chunk (row_base), padded to whole tiles and written everywhere (0 outside the valid range).
template <typename T, int KIND>
__global__ void __launch_bounds__(THREADS, 2)
coeff_kernel(const T* __restrict__ a, const T* __restrict__ b, const float* __restrict__ aa,
             const float* __restrict__ bb, const int* __restrict__ y, const float* __restrict__ lse,
             const float* __restrict__ gw, float* __restrict__ g_out, int ldg, float* __restrict__ daa,
             float* __restrict__ dbb, const float* __restrict__ sums_in, int n, int v, int d, int row_base,
             float n_exp, float eps, float scale, float smoothing, bool vec) {
    __shared__ PairSmem sm;
    __shared__ float col_c2[TILE];
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    const int lrow0 = blockIdx.x * TILE;  // chunk-relative
    const int row0 = row_base + lrow0;
    const int col0 = blockIdx.y * TILE;
    if (KIND == BRAYABS && threadIdx.x < TILE) col_c2[threadIdx.x] = 0.0f;
    float acc[8][8];
    if (sums_in == nullptr) {
        pair_sums<T>(a, b, n, v, d, row0, col0, vec, sm, acc);  // its barriers also order col_c2's zeros
    } else {  // the forward stored the sums
        load_sums(sums_in, ldg, n, row0, col0, acc);
        __syncthreads();
    }
    float col_sum[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) col_sum[j] = 0.0f;
    const float target_rest = smoothing / v;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int row = row0 + own(ty, i);
        const bool row_ok = row < n;
        const float gi = row_ok ? gw[row] : 0.0f;
        const float lse_i = row_ok ? lse[row] : 0.0f;
        const int label = row_ok ? y[row] : -1;
        const float row_aa = (KIND == BRAYABS && row_ok) ? aa[row] : 0.0f;
        float out[8];
        float row_sum = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int col = col0 + own(tx, j);
            float c1 = 0.0f;
            // acc == 0: x equals the centre, every feature ties and the pair's gradient is exactly 0 whatever
            // dLoss/dd (about -n / eps there) is; a huge G would only add rounding noise to 2 sum G s - sum G.
            if (col < v && gi != 0.0f && acc[i][j] != 0.0f) {
                const float col_bb = KIND == BRAYABS ? bb[col] : 0.0f;
                const float dist = distance<KIND>(acc[i][j], row_aa, col_bb, scale);
                const float l2 = log2f(dist + eps);
                const float p = exp2f(-n_exp * l2 - lse_i * LOG2E);
                const float target = (col == label ? 1.0f - smoothing : 0.0f) + target_rest;
                const float gd = gi * (p - target) * (-n_exp * exp2f(-l2));
                if constexpr (KIND == MANHATTAN) {
                    c1 = gd * scale;
                } else {
                    const float den_raw = row_aa + col_bb;
                    const float den = den_raw > 0.0f ? den_raw : 1.0f;
                    c1 = gd / den;
                    const float c2 = den_raw > 0.0f ? -gd * acc[i][j] / (den * den) : 0.0f;
                    row_sum += c2;
                    col_sum[j] += c2;
                }
            }
            out[j] = c1;
        }
        float* dst = g_out + static_cast<size_t>(lrow0 + own(ty, i)) * ldg + col0;
        reinterpret_cast<float4*>(dst + tx * 4)[0] = make_float4(out[0], out[1], out[2], out[3]);
        reinterpret_cast<float4*>(dst + 64 + tx * 4)[0] = make_float4(out[4], out[5], out[6], out[7]);
        if constexpr (KIND == BRAYABS) {
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) row_sum += __shfl_xor_sync(0xffffffffu, row_sum, off);
            if (tx == 0 && row_ok) atomicAdd(daa + row, row_sum);
        }
    }
    if constexpr (KIND == BRAYABS) {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            col_sum[j] += __shfl_xor_sync(0xffffffffu, col_sum[j], 16);  // the warp's two ty
            if ((threadIdx.x & 31) < 16) atomicAdd(&col_c2[own(tx, j)], col_sum[j]);
        }
        __syncthreads();
        if (threadIdx.x < TILE && col0 + threadIdx.x < v) atomicAdd(dbb + col0 + threadIdx.x, col_c2[threadIdx.x]);
    }
}

// ---- backward, step 2: dx (rows x features, loop over centres) -------------------------------------------------

struct alignas(16) GradSmem {
    float g[2][BK][TILE];  // G slice, [centre][row] (grad_x) or [row][centre] (grad_w)
    float o[2][BK][TILE];  // the other operand, [centre][feature] or [row][feature]
};

// Block (row block of the chunk, feature block, centre split); the thread keeps its 8 x 8 x values (keys) in
// registers and walks the split's centres: acc += G[n, v] * s(x[n, k], w[v, k]), gsum[n] += G[n, v].
// dx[n, k] += 2 acc - gsum (atomics: the centre splits add into the same dx).
template <typename T, bool KEYS>
__global__ void __launch_bounds__(THREADS, 1)
grad_x_kernel(const T* __restrict__ a, const T* __restrict__ b, const float* __restrict__ g, int ldg,
              float* __restrict__ dx, int n, int v, int d, int row_base, int chunk_rows, int centres_per_split,
              bool vec) {
    __shared__ GradSmem sm;
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    const int lrow0 = blockIdx.x * TILE;
    const int k0 = blockIdx.y * TILE;
    const int vb = blockIdx.z * centres_per_split;
    const int ve = min(vb + centres_per_split, ldg);
    if (vb >= ve) return;
    float xs[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int row = row_base + lrow0 + own(ty, i);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int k = k0 + own(tx, j);
            xs[i][j] = (lrow0 + own(ty, i) < chunk_rows && k < d)
                           ? load1<T, KEYS>(a + static_cast<size_t>(row) * d + k) : 0.0f;
        }
    }
    float acc[8][8], gsum[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        gsum[i] = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
    }
    float rg[8], rw[8];
    fetch_g_t(g, ldg, lrow0, vb, rg);
    fetch_n<T, KEYS, KEYS>(b, v, d, vb, k0, vec, rw);
    store_t(sm.g[0], rg);
    store_n(sm.o[0], rw);
    __syncthreads();
    for (int c0 = vb, buf = 0; c0 < ve; c0 += BK, buf ^= 1) {
        const bool more = c0 + BK < ve;
        if (more) {
            fetch_g_t(g, ldg, lrow0, c0 + BK, rg);
            fetch_n<T, KEYS, KEYS>(b, v, d, c0 + BK, k0, vec, rw);
        }
#pragma unroll
        for (int cc = 0; cc < BK; ++cc) {
            float gv[8], wv[8];
            read8(sm.g[buf][cc], ty, gv);
            read8(sm.o[buf][cc], tx, wv);
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                gsum[i] += gv[i];
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(gv[i], step<KEYS>(xs[i][j], wv[j]), acc[i][j]);
            }
        }
        if (more) {
            store_t(sm.g[buf ^ 1], rg);
            store_n(sm.o[buf ^ 1], rw);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int lrow = lrow0 + own(ty, i);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int k = k0 + own(tx, j);
            if (lrow < chunk_rows && k < d)
                atomicAdd(dx + static_cast<size_t>(row_base + lrow) * d + k, 2.0f * acc[i][j] - gsum[i]);
        }
    }
}

// ---- backward, step 3: dW (centres x features, loop over the chunk's rows) -------------------------------------

// Block (centre block, feature block); the thread keeps 0.5 - key(w) (or w) of its 8 x 8 in registers and walks
// the chunk's rows: acc += G[n, v] * s(x[n, k], w[v, k]), gsum[v] += G[n, v]; dW[v, k] += gsum - 2 acc (plain
// read-add-write: one block per element, and the chunks run one after another on the stream).
template <typename T, bool KEYS>
__global__ void __launch_bounds__(THREADS, 1)
grad_w_kernel(const T* __restrict__ a, const T* __restrict__ b, const float* __restrict__ g, int ldg,
              float* __restrict__ dw, int n, int v, int d, int row_base, int chunk_rows, int rows_padded,
              bool vec) {
    __shared__ GradSmem sm;
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    const int col0 = blockIdx.x * TILE;
    const int k0 = blockIdx.y * TILE;
    float ws[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int col = col0 + own(ty, i);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int k = k0 + own(tx, j);
            const float w = (col < v && k < d) ? load1<T, KEYS>(b + static_cast<size_t>(col) * d + k) : 0.0f;
            ws[i][j] = KEYS ? 0.5f - w : w;
        }
    }
    float acc[8][8], gsum[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        gsum[i] = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
    }
    // x rows of the chunk start at row_base: the fetch sees the chunk as its own matrix of chunk_rows rows.
    const T* xa = a + static_cast<size_t>(row_base) * d;
    float rg[8], rx[8];
    fetch_g(g, ldg, 0, col0, rg);
    fetch_n<T, KEYS, false>(xa, chunk_rows, d, 0, k0, vec, rx);
    store_n(sm.g[0], rg);
    store_n(sm.o[0], rx);
    __syncthreads();
    for (int r0 = 0, buf = 0; r0 < rows_padded; r0 += BK, buf ^= 1) {
        const bool more = r0 + BK < rows_padded;
        if (more) {
            fetch_g(g, ldg, r0 + BK, col0, rg);
            fetch_n<T, KEYS, false>(xa, chunk_rows, d, r0 + BK, k0, vec, rx);
        }
#pragma unroll
        for (int rr = 0; rr < BK; ++rr) {
            float gv[8], xv[8];
            read8(sm.g[buf][rr], ty, gv);
            read8(sm.o[buf][rr], tx, xv);
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                gsum[i] += gv[i];
#pragma unroll
                for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(gv[i], step<KEYS>(xv[j], ws[i][j]), acc[i][j]);
            }
        }
        if (more) {
            store_n(sm.g[buf ^ 1], rg);
            store_n(sm.o[buf ^ 1], rx);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int col = col0 + own(ty, i);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int k = k0 + own(tx, j);
            if (col < v && k < d) dw[static_cast<size_t>(col) * d + k] += gsum[i] - 2.0f * acc[i][j];
        }
    }
}

// ---- launchers (declared in l1_heads.h) ------------------------------------------------------------------------

int cdiv(long a, long b) { return static_cast<int>((a + b - 1) / b); }

// Splits of `steps` units of work over `blocks` blocks each, minimising waves x steps per split (whole waves of
// `slots` resident blocks): a grid of 320 blocks on 264 slots would leave most of the second wave idle.
int best_splits(int blocks, int steps, int slots) {
    int best = 1;
    long best_cost = -1;
    for (int s = 1; s <= steps; ++s) {
        const int per = cdiv(steps, s);
        if (s > 1 && cdiv(steps, per) != s) continue;  // same as a smaller split count
        const long cost = static_cast<long>(cdiv(static_cast<long>(blocks) * s, slots)) * per;
        if (best_cost < 0 || cost < best_cost) best_cost = cost, best = s;
        if (static_cast<long>(blocks) * s > 64L * slots) break;
    }
    return best;
}

// Resident blocks of `kernel` on the whole GPU.
template <typename K>
int slots_for(K kernel) {
    int per_sm = 0, device = 0, sms = 0;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, THREADS, 0);
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    return std::max(1, per_sm) * std::max(1, sms);
}

template <typename T, int KIND>
cudaError_t forward_typed(const l1cuda::Problem& p, l1cuda::Partials& out, cudaStream_t stream) {
    auto kernel = forward_kernel<T, KIND>;
    const int row_blocks = cdiv(p.n, TILE), col_tiles = cdiv(p.v, TILE);
    if (out.m == nullptr) {  // first call: only the number of splits
        const int per = cdiv(col_tiles, best_splits(row_blocks, col_tiles, slots_for(kernel)));
        out.splits = cdiv(col_tiles, per);
        return cudaSuccess;
    }
    const int per = cdiv(col_tiles, out.splits);
    L1_LAUNCH(kernel, dim3(row_blocks, out.splits), stream,
        static_cast<const T*>(p.a), static_cast<const T*>(p.b), p.aa, p.bb, p.y, out.m, out.s, out.zsum, out.zt,
        out.sums, p.n, p.v, p.d, per, p.n_exp, p.eps, p.scale, p.vec);
    return cudaGetLastError();
}

template <typename T, bool KEYS, int KIND>
cudaError_t backward_typed(const l1cuda::Problem& p, const l1cuda::Grads& gr, cudaStream_t stream) {
    const int ldg = cdiv(p.v, TILE) * TILE;
    auto coeff = coeff_kernel<T, KIND>;
    auto gx = grad_x_kernel<T, KEYS>;
    auto gw = grad_w_kernel<T, KEYS>;
    const T* a = static_cast<const T*>(p.a);
    const T* b = static_cast<const T*>(p.b);
    for (int row_base = 0; row_base < p.n; row_base += gr.chunk_rows) {
        const int rows = std::min(gr.chunk_rows, p.n - row_base);
        const int rows_padded = cdiv(rows, TILE) * TILE;
        L1_LAUNCH(coeff, dim3(rows_padded / TILE, ldg / TILE), stream,
            a, b, p.aa, p.bb, p.y, gr.lse, gr.gw, gr.g, ldg, gr.daa, gr.dbb, gr.sums, p.n, p.v, p.d, row_base,
            p.n_exp, p.eps, p.scale, p.smoothing, p.vec);
        if (gr.dx != nullptr) {
            const int blocks = (rows_padded / TILE) * cdiv(p.d, TILE);
            const int steps = ldg / BK;
            const int per = cdiv(steps, best_splits(blocks, steps, slots_for(gx))) * BK;
            L1_LAUNCH(gx, dim3(rows_padded / TILE, cdiv(p.d, TILE), cdiv(ldg, per)), stream,
                a, b, gr.g, ldg, gr.dx, p.n, p.v, p.d, row_base, rows, per, p.vec);
        }
        if (gr.dw != nullptr) {
            L1_LAUNCH(gw, dim3(ldg / TILE, cdiv(p.d, TILE)), stream,
                a, b, gr.g, ldg, gr.dw, p.n, p.v, p.d, row_base, rows, rows_padded, p.vec);
        }
        const cudaError_t error = cudaGetLastError();
        if (error != cudaSuccess) return error;
    }
    return cudaSuccess;
}

}  // namespace

namespace l1cuda {

int padded_classes(int v) { return cdiv(v, TILE) * TILE; }

int chunk_rows(int n, int v, long max_g_bytes) {
    const long max_rows = std::max<long>(TILE, max_g_bytes / (4L * padded_classes(v)) / TILE * TILE);
    return cdiv(cdiv(n, cdiv(n, max_rows)), TILE) * TILE;
}

// bf16 inputs take the order-key path (KEYS = true), fp32 inputs the value path.
cudaError_t forward(const Problem& p, Partials& out, cudaStream_t stream) {
    if (p.bf16) return p.kind == MANHATTAN ? forward_typed<__nv_bfloat16, MANHATTAN>(p, out, stream)
                                           : forward_typed<__nv_bfloat16, BRAYABS>(p, out, stream);
    return p.kind == MANHATTAN ? forward_typed<float, MANHATTAN>(p, out, stream)
                               : forward_typed<float, BRAYABS>(p, out, stream);
}

cudaError_t backward(const Problem& p, const Grads& grads, cudaStream_t stream) {
    if (p.bf16) return p.kind == MANHATTAN ? backward_typed<__nv_bfloat16, true, MANHATTAN>(p, grads, stream)
                                           : backward_typed<__nv_bfloat16, true, BRAYABS>(p, grads, stream);
    return p.kind == MANHATTAN ? backward_typed<float, false, MANHATTAN>(p, grads, stream)
                               : backward_typed<float, false, BRAYABS>(p, grads, stream);
}

}  // namespace l1cuda
