// CUDA C++ kernels for the elementwise ("L1-type") harmonic heads: the loss -n log(d + eps) -> cross-entropy and
// its gradient, from x (N x D) and W (V x D), with explicit register tiles in both directions, for every kind of
// harmonic/kernels/l1_heads.py (the same distances, the same edge-case rules):
//     MANHATTAN   sum_k |u_k| * scale            (manhattan, minkowski p = 1, hamming_soft: sigmoid bits, 1/D)
//     BRAYABS     sum_k |u_k| / (aa_i + bb_j)    (bray_curtis_abs; aa = sum |x|, bb = sum |w|)
//     BRAYCURTIS  sum_k |u_k| / sum_k |x_k + w_k|
//     MINKOWSKI   (sum_k |u_k|^p)^(1/p) * scale  (inputs pre-scaled so |u| <= 2)
//     CHEBYSHEV   max_k |u_k|                    (gradient shared among tied maxima, as torch.amax)
//     SMOOTH      log(sum_k exp(alpha |u_k|)) / alpha  (one sweep of exponentials as products of per-operand
//                                                       factors, or two: the maximum, then the exponentials)
//     CANBERRA    sum_k |u_k| / (|x_k| + |w_k|)
// Each l1_*.cu file instantiates one family of them; the Python side is harmonic/kernels/l1_cuda/__init__.py.
//
// Five kernels, all on the same block shape: 256 threads as 16 x 16, each thread owning an 8 x 8 register tile of
// a 128 x 128 block tile; the reduction axis is walked in steps of 16, staged through shared memory (two buffers,
// the next step's global loads in flight while the current step computes). A thread's 8 rows are ty*4 + {0..3} and
// 64 + ty*4 + {0..3} (likewise its 8 columns with tx), so its shared-memory reads are 16-byte vectors without bank
// conflicts. grad_xw may instead run a narrow tile, 8 x 4 per thread and 128 x 64 per block, at two blocks per SM
// (fused_cols).
//
//   forward   tile rows x centres, loop over features: the per-pair accumulators (manhattan: acc += |x - w|, FADD +
//             FADD with the |.| operand modifier); the finished tile folds into per-row log-sum-exp partials (one
//             set per V split).
//   coeff     the same tile recomputed in the backward (or read back where the forward kept its values per
//             pair, kept_sum: one, bray_curtis' two sums; chebyshev adds a sweep counting the features tied at
//             the maximum either way); writes one or two per-pair
//             coefficient matrices G1, G2 for a chunk of rows (fp32; at most a configurable number of bytes, chunks
//             walk over N), and for bray_curtis_abs the row / column sums of the denominator's gradient.
//   grad_x    tile rows x features, loop over centres; grad_w: tile centres x features, loop over rows.
//             Sign kinds (manhattan, bray_curtis_abs, bray_curtis), with s = (sign(x - w) + 1) / 2 in {0, 1/2, 1}:
//                 dx[n, k] = sum_v G[n, v] sign(x - w) = 2 sum_v G[n, v] s - sum_v G[n, v]
//                 dW[v, k] = -sum_n G[n, v] sign(x - w) = sum_n G[n, v] - 2 sum_n G[n, v] s
//             so sign(0) = 0 (torch's gradient of |u| at 0) comes out exactly (G is set to 0 for pairs whose
//             features all tie, x on a centre, where dLoss/dd ~ n / eps would swamp the two sums' rounding), and s
//             costs one instruction:
//             16-bit inputs are mapped to order-preserving integer keys kx, kw (exact in fp32), and
//             s = saturate(kx + (0.5 - kw)) (FADD.SAT), then acc = fma(G, s, acc): 2 instructions per triple.
//             bray_curtis adds G2 sign(x + w) the same way: the keys are symmetric (key(-w) = -key(w)), so
//             saturate(kx + 0.5 + kw) is the step of x + w, 4 instructions per triple in all.
//             fp32 inputs: s = saturate(fma(x - w, 2^126, 0.5)), 3 instructions; a difference below 2^-127 (both
//             operands below ~2^-126) gives an s between 0 and 1 instead of the exact step.
//             Other kinds: acc += e(x, w; G1, G2) with e = G1 * dd/dx_k (elem below); their terms are symmetric in
//             x and w, so dd/dw_k(x, w) = dd/dx_k(w, x) and grad_w calls e(w, x).
//   grad_xw   (the other kinds, when dx and dW are both wanted; Grads::fused) grad_x's sweep computing each
//             triple's term once for both: dx in registers, dW summed over the block's rows and added atomically.
// Nothing of size N x V x D is ever formed; G is at most max_g_bytes. Accumulation is fp32 throughout.
// This file has no torch headers (fast to compile); l1_binding.cpp holds the PyTorch side.
#ifdef L1_EMULATE  // host build for tests/kernels/l1_cuda_emulate (a CPU stand-in for each CUDA built-in used)
#include "../../../tests/kernels/l1_cuda_emulate/emulate.h"
#define L1_LAUNCH(kernel, grid, stream, ...) emulate_launch(kernel, grid, __VA_ARGS__)
#define L1_LAUNCH_SMEM(kernel, grid, smem, stream, ...) (++emulate_smem_launches, emulate_launch(kernel, grid, __VA_ARGS__))
#define L1_DYNAMIC_SHARED(type, name) static type name  // blocks run one after another
#define L1_COUNT(counter) (threadIdx.x == 0 ? ++counter : 0)  // the tests' view of which path a block took
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define L1_LAUNCH(kernel, grid, stream, ...) kernel<<<grid, THREADS, 0, stream>>>(__VA_ARGS__)
#define L1_LAUNCH_SMEM(kernel, grid, smem, stream, ...) kernel<<<grid, THREADS, smem, stream>>>(__VA_ARGS__)
// Shared memory above the 48 KB a block may declare statically: sized at launch (cudaFuncSetAttribute).
#define L1_DYNAMIC_SHARED(type, name)                         \
    extern __shared__ __align__(16) unsigned char name##_raw[]; \
    type& name = *reinterpret_cast<type*>(name##_raw)
#define L1_COUNT(counter) ((void)0)
#endif

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "l1_heads.h"

// The per-family entry points (one l1_*.cu each), dispatched on the kind by l1_heads.cu.
namespace l1cuda::family {
cudaError_t forward_sign(const Problem& p, Partials& out, cudaStream_t stream);  // MANHATTAN, BRAYABS
cudaError_t backward_sign(const Problem& p, const Grads& grads, cudaStream_t stream);
cudaError_t forward_braycurtis(const Problem& p, Partials& out, cudaStream_t stream);
cudaError_t backward_braycurtis(const Problem& p, const Grads& grads, cudaStream_t stream);
cudaError_t forward_maximum(const Problem& p, Partials& out, cudaStream_t stream);  // CHEBYSHEV, SMOOTH
cudaError_t backward_maximum(const Problem& p, const Grads& grads, cudaStream_t stream);
cudaError_t forward_power(const Problem& p, Partials& out, cudaStream_t stream);  // MINKOWSKI, CANBERRA
cudaError_t backward_power(const Problem& p, const Grads& grads, cudaStream_t stream);
}  // namespace l1cuda::family

namespace {

constexpr int TILE = 128;     // block tile edge
constexpr int BK = 16;        // reduction-axis step per shared-memory stage (= the 16 threads of a row: add_g_share)
constexpr int THREADS = 256;  // 16 x 16 threads, 8 x 8 results each
using l1cuda::BRAYABS;  // kind codes of harmonic/kernels/l1_heads.py
using l1cuda::BRAYCURTIS;
using l1cuda::CANBERRA;
using l1cuda::CHEBYSHEV;
using l1cuda::MANHATTAN;
using l1cuda::MINKOWSKI;
using l1cuda::SMOOTH;
constexpr float LOG2E = 1.4426950408889634f;
constexpr float TINY = 1e-30f;  // bray_curtis's x = -w divisor, as l1_heads.py

// Kinds whose gradient is G * sign(.) per triple: the s-step form above (and their keys for bf16 inputs).
__host__ __device__ constexpr bool sign_kind(int kind) { return kind == MANHATTAN || kind == BRAYABS || kind == BRAYCURTIS; }
// Kinds with a second per-pair accumulator in the forward (smooth: sum of exponentials; bray_curtis: sum |x + w|).
__host__ __device__ constexpr bool two_accumulators(int kind) { return kind == SMOOTH || kind == BRAYCURTIS; }
// Per-pair coefficient matrices of the backward (G1 and, for these kinds, G2).
__host__ __device__ constexpr int g_arrays(int kind) { return (kind == CHEBYSHEV || kind == SMOOTH || kind == BRAYCURTIS) ? 2 : 1; }
// Values per pair the forward can keep for the backward (kept_sum): both of BRAYCURTIS' sums, one for the others.
__host__ __device__ constexpr int kept_values(int kind) { return kind == BRAYCURTIS ? 2 : 1; }
// Resident blocks the forward / coeff kernels ask registers for: two with one 8 x 8 accumulator, one with two
// (chebyshev's coeff keeps its tie counts beside the maxima).
__host__ __device__ constexpr int pair_blocks(int kind) { return two_accumulators(kind) ? 1 : 2; }
__host__ __device__ constexpr int coeff_blocks(int kind) { return two_accumulators(kind) || kind == CHEBYSHEV ? 1 : 2; }
// Centre (row) steps unrolled per shared-memory stage in grad_x / grad_w: all of them for the sign kinds' two
// instructions per triple; fewer where a triple's terms are longer (more registers live per step).
__host__ __device__ constexpr int grad_unroll(int kind, int p) {
    return sign_kind(kind) ? BK : (kind == CANBERRA ? 1 : (kind == MINKOWSKI && p == 0 ? 2 : 4));
}

// Index (0..127) of a thread's i-th row (or column) inside the block tile: two runs of 4, 64 apart.
__device__ __forceinline__ int own(int t, int i) { return (i < 4 ? 0 : 64) + t * 4 + (i & 3); }

struct Params {  // the kinds' scalars, with what the inner loops need precomputed
    float scale, p, inv_p, pm1, alpha, alpha2;  // pm1 = p - 1, alpha2 = alpha / ln 2
};

// ---- approximate special functions (one MUFU instruction each, as l1_heads.py's inline PTX) --------------------
#ifdef L1_EMULATE
inline float fast_rcp(float v) { return 1.0f / v; }
inline float fast_ex2(float v) {  // .ftz: no subnormal results
    const float r = std::exp2(v);
    return r < FLT_MIN ? 0.0f : r;
}
inline float fast_lg2(float v) { return std::log2(v); }
inline float fast_sqrt(float v) { return std::sqrt(v); }
#else
__device__ __forceinline__ float fast_rcp(float v) {  // v >= FLT_MIN at every call
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r;
}
__device__ __forceinline__ float fast_ex2(float v) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r;
}
__device__ __forceinline__ float fast_lg2(float v) {
    float r;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r;
}
__device__ __forceinline__ float fast_sqrt(float v) {
    float r;
    asm("sqrt.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r;
}
#endif

// The same functions on the FMA pipe, for the forward sweeps whose one MUFU instruction per triple is their bound
// (canberra's rcp, chebyshev_smooth's exp2): the special-function unit does 16 lanes per clock, a quarter of the
// FMA pipe's, so a share of the triples computed this way (fma_slot) runs beside the MUFU ones. Both stay within
// 1.4 x 2^-24 of the exact value, relative (test_fma_pipe_rcp_and_exp2_are_as_accurate_as_the_special_function_unit;
// benchmarks/l1_cuda_check.py measures the kernels' errors).
//   fma_rcp: 1/v for v in [FLT_MIN, 2^126]: an exponent-flip estimate (within 5.1 %), one cubic and one Newton step.
//   fma_ex2: 2^x for x <= 127 (below -125: 2^-125, which no sum of the forward's can notice next to its largest
//            term, 1): x = n + f with n rounded to an integer by adding 1.5 * 2^23, a degree-6 fit of 2^f
//            on [-1/2, 1/2] (least squares in relative error), and n added to its exponent bits.
__device__ __forceinline__ float fma_rcp(float v) {
    float y = __int_as_float(0x7EF311C3 - __float_as_int(v));
    float e = fmaf(-v, y, 1.0f);
    y = fmaf(y, fmaf(e, e, e), y);
    e = fmaf(-v, y, 1.0f);
    return fmaf(y, e, y);
}

__device__ __forceinline__ float fma_ex2(float x) {
    constexpr float ROUND = 12582912.0f;  // 1.5 * 2^23: x + ROUND holds round(x) in its low mantissa bits
    x = fmaxf(x, -125.0f);
    const float t = x + ROUND;
    const float f = x - (t - ROUND);
    float p = 1.5337576e-4f;
    p = fmaf(p, f, 1.3399860e-3f);
    p = fmaf(p, f, 9.6185198e-3f);
    p = fmaf(p, f, 5.5503290e-2f);
    p = fmaf(p, f, 2.4022646e-1f);
    p = fmaf(p, f, 6.9314718e-1f);
    p = fmaf(p, f, 1.0f);
    return __int_as_float(__float_as_int(p) + static_cast<int>(static_cast<unsigned>(__float_as_int(t)) << 23));
}

// Shares (of 64) balancing the two pipes: a MUFU triple issues 4 instructions and holds the unit 8 cycles, an
// FMA-pipe one issues 9 (rcp) or 14 (exp2); issue = 4 + 5 s / 64 (10 s / 64) against 8 (1 - s / 64).
constexpr int FMA_SHARE_RCP = 20, FMA_SHARE_EX2 = 14;

// Whether pair (i, j) of a thread's 8 x 8 tile takes the FMA-pipe function: `share` of the 64 slots, spread evenly.
__host__ __device__ constexpr bool fma_slot(int i, int j, int share) { return (i * 8 + j) * share % 64 < share; }

// c with its sign flipped where u is negative: c * sign(u) for u != 0 (one LOP3).
__device__ __forceinline__ float flip_sign(float c, float u) {
    return __int_as_float(__float_as_int(c) ^ (__float_as_int(u) & static_cast<int>(0x80000000u)));
}

// c * sign(u), with torch's 0 at u == 0.
__device__ __forceinline__ float times_sign(float c, float u) { return u == 0.0f ? 0.0f : flip_sign(c, u); }

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

// 8 consecutive elements of a row as loaded (bf16: four 32-bit words; fp32: the values). The staging loops keep
// the next stage's elements in this form while the current stage computes and unpack them (unpack8) only when
// storing to shared memory: no instruction waits on the global load before the compute loop.
template <typename T>
struct Raw8 {
    float v[8];
};
template <>
struct Raw8<__nv_bfloat16> {
    unsigned w[4];
};

// r = elements 0..7 of src (e < valid; 0 beyond). vec: src is 16-byte aligned.
template <typename T>
__device__ __forceinline__ void load_raw8(const T* src, int valid, bool vec, Raw8<T>& r) {
    if constexpr (sizeof(T) == 4) {
        if (vec && valid >= 8) {
            const float4 p = __ldg(reinterpret_cast<const float4*>(src));
            const float4 q = __ldg(reinterpret_cast<const float4*>(src) + 1);
            r.v[0] = p.x; r.v[1] = p.y; r.v[2] = p.z; r.v[3] = p.w;
            r.v[4] = q.x; r.v[5] = q.y; r.v[6] = q.z; r.v[7] = q.w;
        } else {
#pragma unroll
            for (int e = 0; e < 8; ++e) r.v[e] = e < valid ? src[e] : 0.0f;
        }
    } else {
        const unsigned short* s = reinterpret_cast<const unsigned short*>(src);
        if (vec && valid >= 8) {
            const uint4 p = __ldg(reinterpret_cast<const uint4*>(s));
            r.w[0] = p.x; r.w[1] = p.y; r.w[2] = p.z; r.w[3] = p.w;
        } else {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const unsigned lo = 2 * e < valid ? s[2 * e] : 0u, hi = 2 * e + 1 < valid ? s[2 * e + 1] : 0u;
                r.w[e] = lo | (hi << 16);
            }
        }
    }
}

// out[e] = element e as value or KEYS key (HALF_MINUS: 0.5 - that, the b of step()).
template <typename T, bool KEYS, bool HALF_MINUS = false>
__device__ __forceinline__ void unpack8(const Raw8<T>& r, float out[8]) {
    if constexpr (sizeof(T) == 4) {
#pragma unroll
        for (int e = 0; e < 8; ++e) out[e] = r.v[e];
    } else {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const unsigned short lo = r.w[e] & 0xffff, hi = r.w[e] >> 16;
            out[2 * e] = KEYS ? key16(lo) : bf16_value(lo);
            out[2 * e + 1] = KEYS ? key16(hi) : bf16_value(hi);
        }
    }
    if constexpr (HALF_MINUS) {
#pragma unroll
        for (int e = 0; e < 8; ++e) out[e] = 0.5f - out[e];
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
template <typename T>
__device__ __forceinline__ void fetch_t(const T* m, int rows, int cols, int row0, int c0, bool vec, Raw8<T>& r) {
    const int row = row0 + (threadIdx.x & 127);
    const int col = c0 + (threadIdx.x >> 7) * 8;
    const int valid = row < rows ? min(8, cols - col) : 0;
    load_raw8<T>(m + static_cast<size_t>(row) * cols + col, valid, vec, r);
}

__device__ __forceinline__ void store_t(float (*dst)[TILE], const float r[8]) {
    const int row = threadIdx.x & 127;
    const int col = (threadIdx.x >> 7) * 8;
#pragma unroll
    for (int e = 0; e < 8; ++e) dst[col + e][row] = r[e];
}

template <typename T, bool KEYS>
__device__ __forceinline__ void store_t(float (*dst)[TILE], const Raw8<T>& raw) {
    float r[8];
    unpack8<T, KEYS>(raw, r);
    store_t(dst, r);
}

// Thread t loads row t / (W / 8) of a 16-row slice, columns (t % (W / 8)) * 8 .. + 8 of a W-column block
// (W = 128: every thread; W = 64, the narrow fused sweep's: threads 0..127, the others load nothing): a coalesced
// 16-row x W-column slice stored as dst[row][col] (no transpose).
template <typename T, int W = TILE>
__device__ __forceinline__ void fetch_n(const T* m, int rows, int cols, int row0, int c0, bool vec, Raw8<T>& r) {
    constexpr int PER_ROW = W / 8;
    const int row = row0 + static_cast<int>(threadIdx.x) / PER_ROW;
    const int col = c0 + (threadIdx.x % PER_ROW) * 8;
    const bool loads = W == TILE || threadIdx.x < BK * PER_ROW;  // as store_n: the narrow slice's threads 0..127
    const int valid = loads && row < rows ? min(8, cols - col) : 0;
    load_raw8<T>(m + static_cast<size_t>(row) * cols + col, valid, vec, r);
}

template <int W = TILE>
__device__ __forceinline__ void store_n(float (*dst)[W], const float r[8]) {
    constexpr int PER_ROW = W / 8;
    if (W < TILE && threadIdx.x >= BK * PER_ROW) return;
    float* p = &dst[threadIdx.x / PER_ROW][(threadIdx.x % PER_ROW) * 8];
    reinterpret_cast<float4*>(p)[0] = make_float4(r[0], r[1], r[2], r[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(r[4], r[5], r[6], r[7]);
}

// HALF_MINUS: store 0.5 - key (the b of step()).
template <typename T, bool KEYS, bool HALF_MINUS>
__device__ __forceinline__ void store_n(float (*dst)[TILE], const Raw8<T>& raw) {
    float r[8];
    unpack8<T, KEYS, HALF_MINUS>(raw, r);
    store_n(dst, r);
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

// ---- the pair tile: the per-pair accumulators of a 128 x 128 tile over all D features -------------------------

struct alignas(16) PairSmem {
    float a[2][BK][TILE];  // a^T slice: [feature][row], two buffers
    float b[2][BK][TILE];  // b^T slice: [feature][centre]
};

// Calls update(av, bv, live) once per feature k, in order, with the thread's 8 row values av (rows own(ty, i)) and
// 8 centre values bv (centres own(tx, j)); live is false for the zero padding past D. STEP = 2: update(av, bv, av2,
// bv2, live) once per two features k, k + 1, live = how many of them lie inside D (2, 1 or 0; block-uniform).
template <typename T, int STEP = 1, typename F>
__device__ __forceinline__ void pair_sweep(const T* a, const T* b, int n, int v, int d, int row0, int col0, bool vec,
                                           PairSmem& sm, F&& update) {
    static_assert(STEP == 1 || STEP == 2, "one or two features per update");
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    Raw8<T> ra, rb;
    fetch_t<T>(a, n, d, row0, 0, vec, ra);
    fetch_t<T>(b, v, d, col0, 0, vec, rb);
    store_t<T, false>(sm.a[0], ra);
    store_t<T, false>(sm.b[0], rb);
    __syncthreads();
    for (int k0 = 0, buf = 0; k0 < d; k0 += BK, buf ^= 1) {
        const bool more = k0 + BK < d;
        if (more) {  // next slice in flight while this one computes
            fetch_t<T>(a, n, d, row0, k0 + BK, vec, ra);
            fetch_t<T>(b, v, d, col0, k0 + BK, vec, rb);
        }
#pragma unroll
        for (int kk = 0; kk < BK; kk += STEP) {
            float av[8], bv[8];
            read8(sm.a[buf][kk], ty, av);
            read8(sm.b[buf][kk], tx, bv);
            if constexpr (STEP == 1) {
                update(av, bv, k0 + kk < d);
            } else {
                float av2[8], bv2[8];
                read8(sm.a[buf][kk + 1], ty, av2);
                read8(sm.b[buf][kk + 1], tx, bv2);
                update(av, bv, av2, bv2, d - k0 - kk >= 2 ? 2 : (d - k0 - kk == 1 ? 1 : 0));
            }
        }
        if (more) {
            store_t<T, false>(sm.a[buf ^ 1], ra);
            store_t<T, false>(sm.b[buf ^ 1], rb);
        }
        __syncthreads();
    }
}

// u^p for u >= 0 in the cheap form P chose (l1_heads.py's _pow; 0^p = 0).
template <int P>
__device__ __forceinline__ float power(float u, const Params& q) {
    if constexpr (P == 3) {
        return u * u * u;
    } else if constexpr (P == 15) {
        return u * fast_sqrt(u);
    } else {
        return u > 0.0f ? fast_ex2(q.p * fast_lg2(u)) : 0.0f;
    }
}

// One feature's step of a pair's accumulators (A, B), as l1_heads.py's _pair_stats.
template <int KIND, int P>
__device__ __forceinline__ void pair_add(float& A, float& B, float a, float b, bool live, const Params& q) {
    static_assert(KIND != SMOOTH && KIND != CANBERRA, "their sweeps are pair_stats' own");
    const float u = fabsf(a - b);
    if constexpr (KIND == MANHATTAN || KIND == BRAYABS) {
        A += u;
    } else if constexpr (KIND == MINKOWSKI) {
        A += power<P>(u, q);
    } else if constexpr (KIND == CHEBYSHEV) {
        A = fmaxf(A, u);
    } else {  // BRAYCURTIS (CANBERRA: pair_stats)
        A += u;
        B += fabsf(a + b);
    }
}

// SMOOTH's second sweep: B = sum_k exp2(alpha2 |u_k| - A) over the real features, one exp2 per triple.
template <typename T>
__device__ __forceinline__ void smooth_exp_sweep(const T* a, const T* b, int n, int v, int d, int row0, int col0,
                                                 bool vec, PairSmem& sm, const Params& q, const float A[8][8],
                                                 float B[8][8]) {
    pair_sweep<T>(a, b, n, v, d, row0, col0, vec, sm, [&](const float* av, const float* bv, bool live) {
        if (!live) return;
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const float arg = fmaf(fabsf(av[i] - bv[j]), q.alpha2, -A[i][j]);
                B[i][j] += fma_slot(i, j, FMA_SHARE_EX2) ? fma_ex2(arg) : fast_ex2(arg);
            }
    });
}

// ---- SMOOTH in one sweep: each exponential a product of two per-operand factors --------------------------------

// 2^(alpha2 |x - w|) = max(2^(alpha2 x) 2^(-alpha2 w), 2^(-alpha2 x) 2^(alpha2 w)), and each factor belongs to one
// (row, feature) or one (centre, feature): the block computes the factors once per element as it stages them, and
// a triple costs two products, a max and an addition, with no exp2 (the two sweeps below: 8.7 instructions per
// triple and the special-function unit). Each factor is 2^(hi - o) (one ex2) times 1 + lo ln 2, with p = alpha2 v
// split exactly as hi + lo (lo = fma(alpha2, v, -hi)). hi - o itself is rounded where it needs more bits than hi
// (|hi - o| <= 2 o): a relative error of at most ln 2 o 2^-23 in the factor (3.3e-6 at o = 40), the same order as
// exp2 of a rounded exponent; held in fp32, the kernels' gradients measure as Triton's (benchmarks/results/
// l1-cuda-h200-pairs/smooth-1005/). o is an integer offset per row (o_r) and per centre
// (o_c), ceil(alpha2 max_k |v_k|) from the SMOOTH operands' aa / bb, so no factor exceeds 1 and the sum
// S = sum_k 2^(alpha2 |u_k| - o_r - o_c) <= D never overflows; alpha2 d = log2 S + o_r + o_c. A factor or term far
// below a pair's largest term may flush to 0 (ex2.approx.ftz) without effect as long as that largest term,
// 2^-(o_r + o_c - alpha2 max_k |u_k|), stays far above 2^-126: max_k |u_k| >= |max |x| - max |w||, so the gap is at
// most 2 alpha2 min(max |x|, max |w|) + 2, and a tile takes this sweep where that bound is at most GAP_MAX for all
// its pairs (smooth_tile_in_range; a language model's hidden states may grow large features, its centres stay
// small); the other tiles take the two sweeps, in the forward and in the recomputed coefficients alike.
constexpr int FK = 8;             // features per stage: the four factor arrays fit PairSmem's 32 KB
constexpr float GAP_MAX = 100.0f;  // at alpha = 10: min(max |x|, max |w|) <= 3.4
constexpr float LN2 = 0.6931471805599453f;

struct alignas(16) FactorSmem {
    float f[2][2][2][FK][TILE];  // [buffer][rows, centres][2^p, 2^-p][feature][row or centre]
};
static_assert(sizeof(FactorSmem) == sizeof(PairSmem), "the factor sweep reuses PairSmem's memory");

// max_k |v_k| of row (centre) i of a matrix of `count` (the SMOOTH operands' aa / bb), 0 past its end.
__device__ __forceinline__ float vmax_at(const float* vmax, int i, int count) { return i < count ? vmax[i] : 0.0f; }

// The integer offset of a row or centre whose largest |v| is vmax.
__device__ __forceinline__ float factor_offset(float vmax, float alpha2) { return ceilf(vmax * alpha2); }

// Whether the tile may take the factor sweep, from amax / bmax = max_k |v_k| of each row / centre (the SMOOTH
// operands' aa / bb): block-uniform; false where a bound is missing, NaN or infinite.
__device__ __forceinline__ bool smooth_tile_in_range(const float* amax, const float* bmax, int n, int v, int row0,
                                                     int col0, float alpha2) {
    if (amax == nullptr || bmax == nullptr) return false;
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    float ra = 0.0f, rb = 0.0f;
    bool ok = true;
#pragma unroll
    for (int i = 0; i < 8; ++i) {  // the thread's rows x its centres: every pair of the tile is one thread's
        const float va = vmax_at(amax, row0 + own(ty, i), n), vb = vmax_at(bmax, col0 + own(tx, i), v);
        ok = ok && va >= 0.0f && va <= FLT_MAX && vb >= 0.0f && vb <= FLT_MAX;  // false for NaN
        ra = fmaxf(ra, va);
        rb = fmaxf(rb, vb);
    }
    // the largest min(max |x|, max |w|) over the thread's pairs is min(ra, rb)
    ok = ok && 2.0f * alpha2 * fminf(ra, rb) + 2.0f <= GAP_MAX;
    return !__syncthreads_or(!ok);
}

// Thread t stages operand t / 128 (rows of a, then centres of b), its row t % 128, features k0 .. k0 + 7.
template <typename T>
__device__ __forceinline__ void fetch_factor_slice(const T* a, const T* b, int n, int v, int d, int row0, int col0,
                                                   int k0, bool vec, Raw8<T>& r) {
    const bool centres = threadIdx.x >= TILE;
    const int row = (centres ? col0 : row0) + (threadIdx.x & (TILE - 1));
    const int valid = row < (centres ? v : n) ? min(FK, d - k0) : 0;
    load_raw8<T>((centres ? b : a) + static_cast<size_t>(row) * d + k0, valid, vec, r);
}

// Stores the slice's 2^(p - o) and 2^(-p - o) of the thread's row (0 for features past D: their terms vanish).
template <typename T>
__device__ __forceinline__ void store_factor_slice(FactorSmem& fs, int buf, const Raw8<T>& r, int live, float o,
                                                   float alpha2) {
    float val[8];
    unpack8<T, false>(r, val);
    float(*dst)[FK][TILE] = fs.f[buf][threadIdx.x >= TILE ? 1 : 0];
    const int row = threadIdx.x & (TILE - 1);
#pragma unroll
    for (int e = 0; e < FK; ++e) {
        const float hi = val[e] * alpha2;
        const float lo = fmaf(val[e], alpha2, -hi);
        dst[0][e][row] = e < live ? fast_ex2(hi - o) * fmaf(lo, LN2, 1.0f) : 0.0f;  // hi - o: rounded (above)
        dst[1][e][row] = e < live ? fast_ex2(-hi - o) * fmaf(-lo, LN2, 1.0f) : 0.0f;
    }
}

// A = alpha2 d = log2 S + o_r + o_c for the tile's pairs (B = 1: distance() and kept_sum() read A + log2 B); A
// starts at 0.
template <typename T>
__device__ __forceinline__ void smooth_factor_sweep(const T* a, const T* b, const float* amax, const float* bmax,
                                                    int n, int v, int d, int row0, int col0, bool vec, PairSmem& sm,
                                                    const Params& q, float A[8][8], float B[8][8]) {
    FactorSmem& fs = reinterpret_cast<FactorSmem&>(sm);
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    const bool centres = threadIdx.x >= TILE;
    const int staged = (centres ? col0 : row0) + (threadIdx.x & (TILE - 1));  // the row this thread stages
    const float o = factor_offset(vmax_at(centres ? bmax : amax, staged, centres ? v : n), q.alpha2);
    Raw8<T> raw;
    fetch_factor_slice<T>(a, b, n, v, d, row0, col0, 0, vec, raw);
    store_factor_slice<T>(fs, 0, raw, d, o, q.alpha2);
    __syncthreads();
    for (int k0 = 0, buf = 0; k0 < d; k0 += FK, buf ^= 1) {
        const bool more = k0 + FK < d;
        if (more) fetch_factor_slice<T>(a, b, n, v, d, row0, col0, k0 + FK, vec, raw);
#pragma unroll
        for (int kk = 0; kk < FK; ++kk) {
            float xu[8], xd[8], wu[8], wd[8];
            read8(fs.f[buf][0][0][kk], ty, xu);
            read8(fs.f[buf][0][1][kk], ty, xd);
            read8(fs.f[buf][1][0][kk], tx, wu);
            read8(fs.f[buf][1][1][kk], tx, wd);
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) A[i][j] += fmaxf(xu[i] * wd[j], xd[i] * wu[j]);
        }
        if (more) store_factor_slice<T>(fs, buf ^ 1, raw, d - k0 - FK, o, q.alpha2);
        __syncthreads();  // also the barrier before PairSmem's next use
    }
    float o_col[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) o_col[j] = factor_offset(vmax_at(bmax, col0 + own(tx, j), v), q.alpha2);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const float o_row = factor_offset(vmax_at(amax, row0 + own(ty, i), n), q.alpha2);
#pragma unroll
        for (int j = 0; j < 8; ++j) {  // alpha2 d >= log2 D >= 0: the clamp only stops rounding below 0
            A[i][j] = fmaxf(log2f(fmaxf(A[i][j], FLT_MIN)) + (o_row + o_col[j]), 0.0f);
            B[i][j] = 1.0f;
        }
    }
}

// ---- CANBERRA with one reciprocal per two features ---------------------------------------------------------------

// |u_1| / s_1 + |u_2| / s_2 = (|u_1| s_2 + |u_2| s_1) / (s_1 s_2), s = |x_k| + |w_k|: two features' terms cost 8
// instructions and one rcp instead of 8 and two (the forward's special-function unit, a quarter of the FMA pipe's
// rate, was its bound). Exact enough where every s of the pair lies in [2^-40, 2^40]: s_1 s_2 in [2^-80, 2^80], its
// reciprocal normal, and a numerator |u| s is at least 2^-25 s_1 s_2 > 2^-126 wherever u != 0 (fp32 and bf16
// values: |u| >= 2^-25 s), so no term flushes to 0. s_k >= max(|x_k|, |w_k|), so that holds for a pair where
// max |v| <= 2^39 for the row and for the centre, and min_k |x_k| >= 2^-40 or min_k |w_k| >= 2^-40: the CANBERRA
// operands aa / bb carry min_k |v_k| for each row / centre, or -1 where max_k |v_k| > 2^39 (or is not finite;
// harmonic/distances.py). A tile where some pair is outside (a row and a centre with exact zeros, ReLU features at
// a zero-initialised centre, or values beyond 2^39) takes the one-reciprocal-per-feature sweep.
constexpr float CANBERRA_PAIR_MIN = 0x1p-40f;

// The CANBERRA operands' bound of row (centre) i of a matrix of `count`: padding past the end qualifies (its pairs
// are never read).
__device__ __forceinline__ float canberra_bound_at(const float* bound, int i, int count) {
    return i < count ? bound[i] : FLT_MAX;
}

// Whether every pair of the tile may take canberra_pair_sweep (above): block-uniform; false without operands.
__device__ __forceinline__ bool canberra_tile_in_range(const float* amin, const float* bmin, int n, int v, int row0,
                                                       int col0) {
    if (amin == nullptr || bmin == nullptr) return false;
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    bool rows_small = false, cols_small = false;  // a row (centre) whose min |v| is below the bound, or out of range
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const float ra = canberra_bound_at(amin, row0 + own(ty, i), n);
        const float cb = canberra_bound_at(bmin, col0 + own(tx, i), v);
        const bool out = !(ra >= 0.0f) || !(cb >= 0.0f);  // -1 or NaN: no pair of this row (centre) qualifies
        rows_small = rows_small || out || !(ra >= CANBERRA_PAIR_MIN);
        cols_small = cols_small || out || !(cb >= CANBERRA_PAIR_MIN);
    }
    // every pair has a row or a centre at or above the bound unless some row and some centre are both below it
    const bool any_rows = __syncthreads_or(rows_small), any_cols = __syncthreads_or(cols_small);
    return !(any_rows && any_cols);
}

// A = sum_k |u_k| / s_k over the tile's pairs, two features per reciprocal (the tile in range: above).
template <typename T>
__device__ __forceinline__ void canberra_pair_sweep(const T* a, const T* b, int n, int v, int d, int row0, int col0,
                                                    bool vec, PairSmem& sm, float A[8][8]) {
    pair_sweep<T, 2>(a, b, n, v, d, row0, col0, vec, sm,
                     [&](const float* av, const float* bv, const float* av2, const float* bv2, int live) {
        if (live == 2) {
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) {
                    const float s1 = fabsf(av[i]) + fabsf(bv[j]), s2 = fabsf(av2[i]) + fabsf(bv2[j]);
                    const float num = fmaf(fabsf(av2[i] - bv2[j]), s1, fabsf(av[i] - bv[j]) * s2);
                    A[i][j] = fmaf(num, fast_rcp(s1 * s2), A[i][j]);
                }
        } else if (live == 1) {  // odd D: the last feature alone
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j)
                    A[i][j] = fmaf(fabsf(av[i] - bv[j]), fast_rcp(fabsf(av[i]) + fabsf(bv[j])), A[i][j]);
        }
    });
}

// The tile's per-pair accumulators (aa, bb: the kind's per-row / per-centre terms, read here by SMOOTH: its
// max_k |v_k|, and CANBERRA: its bounds above). SMOOTH takes the factor sweep above, or where the tile is out of
// its range two sweeps: A = alpha2 max_k |u_k| (alpha2 = alpha / ln 2), then B (smooth_exp_sweep), so the largest
// terms have exponents near 0, where exp2 of a rounded exponent is most accurate.
template <typename T, int KIND, int P>
__device__ __forceinline__ void pair_stats(const T* a, const T* b, const float* aa, const float* bb, int n, int v,
                                           int d, int row0, int col0, bool vec, PairSmem& sm, const Params& q,
                                           float A[8][8], float B[8][8]) {
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) A[i][j] = B[i][j] = 0.0f;
    if constexpr (KIND == SMOOTH) {
        if (smooth_tile_in_range(aa, bb, n, v, row0, col0, q.alpha2)) {
            smooth_factor_sweep<T>(a, b, aa, bb, n, v, d, row0, col0, vec, sm, q, A, B);
            return;
        }
        L1_COUNT(emulate_smooth_fallbacks);
        pair_sweep<T>(a, b, n, v, d, row0, col0, vec, sm, [&](const float* av, const float* bv, bool) {
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) A[i][j] = fmaxf(A[i][j], fabsf(av[i] - bv[j]));  // padding: |0| adds nothing
        });
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j) A[i][j] *= q.alpha2;
        smooth_exp_sweep<T>(a, b, n, v, d, row0, col0, vec, sm, q, A, B);
    } else if constexpr (KIND == CANBERRA) {
        if (canberra_tile_in_range(aa, bb, n, v, row0, col0)) {
            canberra_pair_sweep<T>(a, b, n, v, d, row0, col0, vec, sm, A);
            return;
        }
        L1_COUNT(emulate_canberra_fallbacks);
        // den = |a| + (|b| + FLT_MIN): |a| + |b| (the FLT_MIN vanishes unless both are below ~2^-100) and never 0,
        // where u = 0 too; 8 additions per feature instead of a clamp per triple
        pair_sweep<T>(a, b, n, v, d, row0, col0, vec, sm, [&](const float* av, const float* bv, bool) {
            float bt[8];
#pragma unroll
            for (int j = 0; j < 8; ++j) bt[j] = fabsf(bv[j]) + FLT_MIN;
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) {
                    const float den = fabsf(av[i]) + bt[j];
                    const float r = fma_slot(i, j, FMA_SHARE_RCP) ? fma_rcp(den) : fast_rcp(den);
                    A[i][j] = fmaf(fabsf(av[i] - bv[j]), r, A[i][j]);
                }
        });
    } else {
        pair_sweep<T>(a, b, n, v, d, row0, col0, vec, sm, [&](const float* av, const float* bv, bool live) {
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) pair_add<KIND, P>(A[i][j], B[i][j], av[i], bv[j], live, q);
        });
    }
}

// Chebyshev's second sweep: B = the number of features whose |u| equals the maximum A (padding counts only where
// A = 0, whose pairs have no gradient).
template <typename T>
__device__ __forceinline__ void count_ties(const T* a, const T* b, int n, int v, int d, int row0, int col0, bool vec,
                                           PairSmem& sm, const float A[8][8], float B[8][8]) {
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) B[i][j] = 0.0f;
    pair_sweep<T>(a, b, n, v, d, row0, col0, vec, sm, [&](const float* av, const float* bv, bool) {
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j)
                if (fabsf(av[i] - bv[j]) == A[i][j]) B[i][j] += 1.0f;
    });
}

// Distance from the accumulators, as l1_heads.py's _finish (BRAYABS: over aa + bb, where den = 0 implies A = 0).
template <int KIND>
__device__ __forceinline__ float distance(float A, float B, float aa, float bb, const Params& q) {
    if constexpr (KIND == MANHATTAN) {
        return A * q.scale;
    } else if constexpr (KIND == MINKOWSKI) {
        return A > 0.0f ? exp2f(log2f(A) * q.inv_p) * q.scale : 0.0f;
    } else if constexpr (KIND == SMOOTH) {
        return (A + log2f(B)) / q.alpha2;  // A = alpha2 max |u|: max + log(sum exp(alpha (|u| - max))) / alpha
    } else if constexpr (KIND == BRAYCURTIS) {
        return A / (B > 0.0f ? B : TINY);  // x = -w: divide by TINY
    } else if constexpr (KIND == BRAYABS) {
        const float den = aa + bb;
        return A / (den > 0.0f ? den : 1.0f);
    } else {  // CHEBYSHEV, CANBERRA
        return A;
    }
}

// The backward's per-pair coefficients from gd = dLoss/dd, as l1_heads.py's _pair_coefficients: c1 (G1), c2 (G2,
// where g_arrays(KIND) == 2) and, for BRAYABS, cden, the coefficient of its denominator aa + bb.
template <int KIND, int P>
__device__ __forceinline__ void coefficients(float gd, float dist, float A, float B, float aa, float bb,
                                             const Params& q, float& c1, float& c2, float& cden) {
    c2 = 0.0f;
    cden = 0.0f;
    if constexpr (KIND == MANHATTAN) {
        c1 = gd * q.scale;
    } else if constexpr (KIND == MINKOWSKI) {
        // dd/du_k = scale |u_k|^(p - 1) sign(u_k) / (d / scale)^(p - 1)
        const float base = dist / q.scale;
        const float dp = P == 3 ? base * base : (P == 15 ? sqrtf(base) : exp2f(log2f(base) * q.pm1));
        c1 = dist > 0.0f ? gd * q.scale / dp : 0.0f;
    } else if constexpr (KIND == CHEBYSHEV) {
        // elem: [|u| == d] c1 u, and u / d = sign(u) there: c1 = gd / (number of tied maxima) / d
        c1 = dist > 0.0f ? gd / fmaxf(B, 1.0f) / dist : 0.0f;
        c2 = dist;
    } else if constexpr (KIND == SMOOTH) {
        c1 = gd;
        c2 = dist * q.alpha2;  // exp(alpha (|u| - d)) = exp2(|u| alpha2 - c2): the softmax weight of feature k
    } else if constexpr (KIND == CANBERRA) {
        c1 = gd;
    } else if constexpr (KIND == BRAYCURTIS) {
        const float den = B > 0.0f ? B : TINY;
        c1 = gd / den;
        c2 = B > 0.0f ? -gd * A / (den * den) : 0.0f;
    } else {  // BRAYABS
        const float den_raw = aa + bb;
        const float den = den_raw > 0.0f ? den_raw : 1.0f;
        c1 = gd / den;
        cden = den_raw > 0.0f ? -gd * A / (den * den) : 0.0f;
    }
}

// c1 * dd/da_k for one feature of a pair (a, b) of a non-sign kind, as l1_heads.py's _elem_grad: grad_x calls it
// as (x, w), grad_w as (w, x) (each kind's term is symmetric in its two operands).
template <int KIND, int P>
__device__ __forceinline__ float elem(float a, float b, float c1, float c2, const Params& q) {
    const float u = a - b;
    if constexpr (KIND == MINKOWSKI) {
        if constexpr (P == 3) {
            return c1 * u * fabsf(u);  // |u|^2 sign(u)
        } else if constexpr (P == 15) {
            return flip_sign(c1 * fast_sqrt(fabsf(u)), u);  // 0 at u = 0 through the square root
        } else {
            const float au = fabsf(u);
            return au > 0.0f ? flip_sign(c1 * fast_ex2(q.pm1 * fast_lg2(au)), u) : 0.0f;
        }
    } else if constexpr (KIND == CHEBYSHEV) {
        return fabsf(u) == c2 ? c1 * u : 0.0f;
    } else if constexpr (KIND == SMOOTH) {
        return times_sign(c1 * fast_ex2(fmaf(fabsf(u), q.alpha2, -c2)), u);
    } else {  // CANBERRA: d/da |u| / (|a| + |b|) = sign(u) (|b| + b sign(a)) / (|a| + |b|)^2; 0 where u = 0
        const float r = fast_rcp(fmaxf(fabsf(a) + fabsf(b), FLT_MIN));
        const float nb = fabsf(b) + (a == 0.0f ? 0.0f : flip_sign(b, a));
        return times_sign(c1 * nb * r * r, u);
    }
}

// The one value per pair the forward keeps for the backward (HARMONIC_L1_CUDA_STORE): A, except SMOOTH's
// A + log2 B (= alpha2 d), which the backward reads back as A with B = 1 (the same distance, bit for bit), and 0
// where A = 0 as the coefficients' test of a point on its centre needs. BRAYCURTIS keeps B as well (store_sums).
template <int KIND>
__device__ __forceinline__ float kept_sum(float A, float B) {
    if constexpr (KIND == SMOOTH) {
        return A == 0.0f ? 0.0f : A + log2f(B);
    } else {
        return A;
    }
}

// One N x ld fp32 array of the forward's kept values: the thread's 8 x 8 of v, rows < n only.
__device__ __forceinline__ void store_pairs(float* dst0, int ld, int n, int row0, int col0, const float v[8][8]) {
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int row = row0 + own(ty, i);
        if (row >= n) continue;
        float* dst = dst0 + static_cast<size_t>(row) * ld + col0;
        reinterpret_cast<float4*>(dst + tx * 4)[0] = make_float4(v[i][0], v[i][1], v[i][2], v[i][3]);
        reinterpret_cast<float4*>(dst + 64 + tx * 4)[0] = make_float4(v[i][4], v[i][5], v[i][6], v[i][7]);
    }
}

// The forward's kept values: kept_sum in sums[0 .. N x ld), and BRAYCURTIS' B in the second N x ld array.
template <int KIND>
__device__ __forceinline__ void store_sums(float* sums, int ld, int n, int row0, int col0, const float A[8][8],
                                           const float B[8][8]) {
    float k[8][8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) k[i][j] = kept_sum<KIND>(A[i][j], B[i][j]);
    store_pairs(sums, ld, n, row0, col0, k);
    if constexpr (kept_values(KIND) == 2) store_pairs(sums + static_cast<size_t>(n) * ld, ld, n, row0, col0, B);
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
template <typename T, int KIND, int P>
__global__ void __launch_bounds__(THREADS, pair_blocks(KIND))
forward_kernel(const T* __restrict__ a, const T* __restrict__ b, const float* __restrict__ aa,
               const float* __restrict__ bb, const int* __restrict__ y, float* __restrict__ m_out,
               float* __restrict__ s_out, float* __restrict__ zsum_out, float* __restrict__ zt_out,
               float* __restrict__ sums_out, int n, int v, int d, int tiles_per_split, float n_exp, float eps,
               Params q, bool vec) {
    __shared__ PairSmem sm;
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    const int row0 = blockIdx.x * TILE;
    const int split = blockIdx.y;
    const int first = split * tiles_per_split;
    const int last = min(first + tiles_per_split, (v + TILE - 1) / TILE);
    float run_m = -INFINITY, run_s = 0.0f, run_zsum = 0.0f, run_zt = 0.0f;  // row tx's state (tx < 8)
    float A[8][8], B[8][8];
    for (int tile = first; tile < last; ++tile) {
        const int col0 = tile * TILE;
        pair_stats<T, KIND, P>(a, b, aa, bb, n, v, d, row0, col0, vec, sm, q, A, B);
        if (sums_out != nullptr) store_sums<KIND>(sums_out, (v + TILE - 1) / TILE * TILE, n, row0, col0, A, B);
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
                z[j] = -n_exp * logf(distance<KIND>(A[i][j], B[i][j], row_aa, col_bb[j], q) + eps);
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
// _pair_coefficients: gd = g_i (p - target) (-n / (d + eps)), then coefficients() (BRAYABS also adds its
// denominator's gradient cden to daa[row] and dbb[col]). G rows are relative to the chunk (row_base), padded to
// whole tiles and written everywhere (0 outside the valid range).
template <typename T, int KIND, int P>
__global__ void __launch_bounds__(THREADS, coeff_blocks(KIND))
coeff_kernel(const T* __restrict__ a, const T* __restrict__ b, const float* __restrict__ aa,
             const float* __restrict__ bb, const int* __restrict__ y, const float* __restrict__ lse,
             const float* __restrict__ gw, float* __restrict__ g1_out, float* __restrict__ g2_out, int ldg,
             float* __restrict__ daa, float* __restrict__ dbb, const float* __restrict__ sums_in, int n, int v,
             int d, int row_base, float n_exp, float eps, Params q, float smoothing, bool vec) {
    __shared__ PairSmem sm;
    __shared__ float col_c2[TILE];
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    const int lrow0 = blockIdx.x * TILE;  // chunk-relative
    const int row0 = row_base + lrow0;
    const int col0 = blockIdx.y * TILE;
    if (KIND == BRAYABS && threadIdx.x < TILE) col_c2[threadIdx.x] = 0.0f;
    float A[8][8], B[8][8];
    if (sums_in == nullptr) {
        pair_stats<T, KIND, P>(a, b, aa, bb, n, v, d, row0, col0, vec, sm, q, A, B);  // its barriers order col_c2's zeros
    } else {  // the forward kept its values (kept_sum; B: BRAYCURTIS' second array, else unused, 1 for SMOOTH, or
              // chebyshev's ties below)
        load_sums(sums_in, ldg, n, row0, col0, A);
        if constexpr (kept_values(KIND) == 2) {
            load_sums(sums_in + static_cast<size_t>(n) * ldg, ldg, n, row0, col0, B);
        } else {
#pragma unroll
            for (int i = 0; i < 8; ++i)
#pragma unroll
                for (int j = 0; j < 8; ++j) B[i][j] = 1.0f;
        }
        __syncthreads();
    }
    if constexpr (KIND == CHEBYSHEV) count_ties<T>(a, b, n, v, d, row0, col0, vec, sm, A, B);
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
        float out1[8], out2[8];
        float row_sum = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int col = col0 + own(tx, j);
            // a pair without gradient: a term of exactly 0 (SMOOTH: exp2(|u| alpha2 - inf) = 0, where c2 = 0 would let
            // exp2 overflow to inf for alpha2 |u| > 128 and give 0 * inf = NaN)
            float c1 = 0.0f, c2 = KIND == SMOOTH ? INFINITY : 0.0f;
            // A == 0: x equals the centre (every kind's A is 0 only where every feature ties), so the pair's
            // gradient is exactly 0 whatever dLoss/dd (about -n / eps there) is; a huge G would only add
            // rounding noise to the sign kinds' 2 sum G s - sum G.
            if (col < v && gi != 0.0f && A[i][j] != 0.0f) {
                const float col_bb = KIND == BRAYABS ? bb[col] : 0.0f;
                const float dist = distance<KIND>(A[i][j], B[i][j], row_aa, col_bb, q);
                const float l2 = log2f(dist + eps);
                const float p = exp2f(-n_exp * l2 - lse_i * LOG2E);
                const float target = (col == label ? 1.0f - smoothing : 0.0f) + target_rest;
                const float gd = gi * (p - target) * (-n_exp * exp2f(-l2));
                float cden;
                coefficients<KIND, P>(gd, dist, A[i][j], B[i][j], row_aa, col_bb, q, c1, c2, cden);
                if constexpr (KIND == BRAYABS) {
                    row_sum += cden;
                    col_sum[j] += cden;
                }
            }
            out1[j] = c1;
            out2[j] = c2;
        }
        const size_t at = static_cast<size_t>(lrow0 + own(ty, i)) * ldg + col0;
        reinterpret_cast<float4*>(g1_out + at + tx * 4)[0] = make_float4(out1[0], out1[1], out1[2], out1[3]);
        reinterpret_cast<float4*>(g1_out + at + 64 + tx * 4)[0] = make_float4(out1[4], out1[5], out1[6], out1[7]);
        if constexpr (g_arrays(KIND) == 2) {
            reinterpret_cast<float4*>(g2_out + at + tx * 4)[0] = make_float4(out2[0], out2[1], out2[2], out2[3]);
            reinterpret_cast<float4*>(g2_out + at + 64 + tx * 4)[0] = make_float4(out2[4], out2[5], out2[6], out2[7]);
        }
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

// ---- backward, steps 2 and 3: dx and dW ------------------------------------------------------------------------

template <int NG, int W = TILE>
struct alignas(16) GradSmem {
    float g[NG][2][BK][TILE];  // G1 (G2) slices, [centre][row] (grad_x) or [row][centre] (grad_w)
    float o[2][BK][W];         // the other operand, [centre][feature] or [row][feature] (W features: grad_xw's)
};

// The sign kinds' sum of G over the stage's 16 centres (grad_x) or rows (grad_w), for the thread's 8 rows (centres):
// each of the 16 threads sharing them (tx = 0..15) adds one of the 16, G1 + sign2 * G2, once per stage instead of
// every thread adding all 16 in the inner loop; sum_over_row_threads completes the sums at the end.
template <int NG, int SIGN2>
__device__ __forceinline__ void add_g_share(float (*g)[2][BK][TILE], int buf, int ty, int tx, float gsum[8]) {
    float g1[8];
    read8(g[0][buf][tx], ty, g1);
    if constexpr (SIGN2 != 0) {
        float g2[8];
        read8(g[NG - 1][buf][tx], ty, g2);
#pragma unroll
        for (int i = 0; i < 8; ++i) gsum[i] += SIGN2 > 0 ? g1[i] + g2[i] : g1[i] - g2[i];
    } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) gsum[i] += g1[i];
    }
}

// Sum of a value over the 16 threads of a half-warp (the threads sharing ty), returned to each of them.
__device__ __forceinline__ float sum_over_row_threads(float value) {
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) value += __shfl_xor_sync(0xffffffffu, value, off);
    return value;
}

// The streamed operand of a sign kind's second step (bray_curtis' sign(x + w)): from b = 0.5 - key(w) (keys) or
// b = w (values), the value the matching step2 takes.
template <bool KEYS>
__device__ __forceinline__ float step2_operand(float b) {
    return KEYS ? b - 1.0f : -b;
}

// s2 = (sign(x + w) + 1) / 2 from a = key(x) or x and step2_operand(b): saturate(kx + 0.5 + kw) (keys).
template <bool KEYS>
__device__ __forceinline__ float step2(float a, float b2) {
    if constexpr (KEYS) {
        return __saturatef(a - b2);
    } else {
        return step<false>(a, b2);
    }
}

// Index of a thread's j-th feature inside a block tile of 16 TW features: own(t, j) for TW = 8, one run of 4
// (t * 4 + j) for the narrow fused sweep's TW = 4.
template <int TW>
__device__ __forceinline__ int own_col(int t, int j) { return TW == 8 ? own(t, j) : t * TW + j; }

// The thread's 8 x TW of the chunk's rows (values or KEYS), 0 past the chunk and past D: the register operand of
// grad_x and grad_xw.
template <typename T, bool KEYS, int TW = 8>
__device__ __forceinline__ void load_row_tile(const T* a, int row_base, int lrow0, int k0, int chunk_rows, int d,
                                              float xs[8][TW]) {
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int row = row_base + lrow0 + own(ty, i);
#pragma unroll
        for (int j = 0; j < TW; ++j) {
            const int k = k0 + own_col<TW>(tx, j);
            xs[i][j] = (lrow0 + own(ty, i) < chunk_rows && k < d)
                           ? load1<T, KEYS>(a + static_cast<size_t>(row) * d + k) : 0.0f;
        }
    }
}

// Block (row block of the chunk, feature block, centre split); the thread keeps its 8 x 8 x values (keys) in
// registers and walks the split's centres. Sign kinds: acc += G1 s (+ G2 s2), gsum[n] = sum G1 (+ G2)
// (add_g_share), and dx[n, k] += 2 acc - gsum; other kinds: acc += elem(x, w) (atomics: the centre splits add into the same dx).
template <typename T, int KIND, int P>
__global__ void __launch_bounds__(THREADS, 1)
grad_x_kernel(const T* __restrict__ a, const T* __restrict__ b, const float* __restrict__ g1,
              const float* __restrict__ g2, int ldg, float* __restrict__ dx, int n, int v, int d, int row_base,
              int chunk_rows, int centres_per_split, Params q, bool vec) {
    constexpr bool SIGN = sign_kind(KIND);
    constexpr bool KEYS = SIGN && sizeof(T) == 2;
    constexpr int NG = g_arrays(KIND);
    __shared__ GradSmem<NG> sm;
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    const int lrow0 = blockIdx.x * TILE;
    const int k0 = blockIdx.y * TILE;
    const int vb = blockIdx.z * centres_per_split;
    const int ve = min(vb + centres_per_split, ldg);
    if (vb >= ve) return;
    const float* gs[2] = {g1, NG == 2 ? g2 : g1};
    float xs[8][8];
    load_row_tile<T, KEYS>(a, row_base, lrow0, k0, chunk_rows, d, xs);
    float acc[8][8], gsum[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        gsum[i] = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
    }
    float rg[NG][8];
    Raw8<T> rw;
#pragma unroll
    for (int h = 0; h < NG; ++h) fetch_g_t(gs[h], ldg, lrow0, vb, rg[h]);
    fetch_n<T>(b, v, d, vb, k0, vec, rw);
#pragma unroll
    for (int h = 0; h < NG; ++h) store_t(sm.g[h][0], rg[h]);
    store_n<T, KEYS, KEYS>(sm.o[0], rw);
    __syncthreads();
    for (int c0 = vb, buf = 0; c0 < ve; c0 += BK, buf ^= 1) {
        const bool more = c0 + BK < ve;
        if (more) {
#pragma unroll
            for (int h = 0; h < NG; ++h) fetch_g_t(gs[h], ldg, lrow0, c0 + BK, rg[h]);
            fetch_n<T>(b, v, d, c0 + BK, k0, vec, rw);
        }
#pragma unroll(grad_unroll(KIND, P))
        for (int cc = 0; cc < BK; ++cc) {
            float gv[NG][8], wv[8], wv2[8];
#pragma unroll
            for (int h = 0; h < NG; ++h) read8(sm.g[h][buf][cc], ty, gv[h]);
            read8(sm.o[buf][cc], tx, wv);
            if constexpr (KIND == BRAYCURTIS) {
#pragma unroll
                for (int j = 0; j < 8; ++j) wv2[j] = step2_operand<KEYS>(wv[j]);
            }
#pragma unroll
            for (int i = 0; i < 8; ++i) {
#pragma unroll
                for (int j = 0; j < 8; ++j) {
                    if constexpr (KIND == BRAYCURTIS) {
                        acc[i][j] = fmaf(gv[0][i], step<KEYS>(xs[i][j], wv[j]),
                                         fmaf(gv[NG - 1][i], step2<KEYS>(xs[i][j], wv2[j]), acc[i][j]));
                    } else if constexpr (SIGN) {
                        acc[i][j] = fmaf(gv[0][i], step<KEYS>(xs[i][j], wv[j]), acc[i][j]);
                    } else {
                        acc[i][j] += elem<KIND, P>(xs[i][j], wv[j], gv[0][i], gv[NG - 1][i], q);
                    }
                }
            }
        }
        if constexpr (SIGN) add_g_share<NG, KIND == BRAYCURTIS ? 1 : 0>(sm.g, buf, ty, tx, gsum);
        if (more) {
#pragma unroll
            for (int h = 0; h < NG; ++h) store_t(sm.g[h][buf ^ 1], rg[h]);
            store_n<T, KEYS, KEYS>(sm.o[buf ^ 1], rw);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        if constexpr (SIGN) gsum[i] = sum_over_row_threads(gsum[i]);
        const int lrow = lrow0 + own(ty, i);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int k = k0 + own(tx, j);
            if (lrow < chunk_rows && k < d)
                atomicAdd(dx + static_cast<size_t>(row_base + lrow) * d + k, SIGN ? 2.0f * acc[i][j] - gsum[i]
                                                                                  : acc[i][j]);
        }
    }
}

// Block (centre block, feature block); the thread keeps its 8 x 8 of w (sign kinds: 0.5 - key(w) or w) in
// registers and walks the chunk's rows. Sign kinds: acc += G1 s (bray_curtis: - G2 s2), gsum[v] = sum G1 (- G2),
// and dW[v, k] += gsum - 2 acc; other kinds: acc += elem(w, x) (plain read-add-write: one block per element, and the
// chunks run one after another on the stream).
template <typename T, int KIND, int P>
__global__ void __launch_bounds__(THREADS, 1)
grad_w_kernel(const T* __restrict__ a, const T* __restrict__ b, const float* __restrict__ g1,
              const float* __restrict__ g2, int ldg, float* __restrict__ dw, int n, int v, int d, int row_base,
              int chunk_rows, int rows_padded, Params q, bool vec) {
    constexpr bool SIGN = sign_kind(KIND);
    constexpr bool KEYS = SIGN && sizeof(T) == 2;
    constexpr int NG = g_arrays(KIND);
    __shared__ GradSmem<NG> sm;
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    const int col0 = blockIdx.x * TILE;
    const int k0 = blockIdx.y * TILE;
    const float* gs[2] = {g1, NG == 2 ? g2 : g1};
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
    float rg[NG][8];
    Raw8<T> rx;
#pragma unroll
    for (int h = 0; h < NG; ++h) fetch_g(gs[h], ldg, 0, col0, rg[h]);
    fetch_n<T>(xa, chunk_rows, d, 0, k0, vec, rx);
#pragma unroll
    for (int h = 0; h < NG; ++h) store_n(sm.g[h][0], rg[h]);
    store_n<T, KEYS, false>(sm.o[0], rx);
    __syncthreads();
    for (int r0 = 0, buf = 0; r0 < rows_padded; r0 += BK, buf ^= 1) {
        const bool more = r0 + BK < rows_padded;
        if (more) {
#pragma unroll
            for (int h = 0; h < NG; ++h) fetch_g(gs[h], ldg, r0 + BK, col0, rg[h]);
            fetch_n<T>(xa, chunk_rows, d, r0 + BK, k0, vec, rx);
        }
#pragma unroll(grad_unroll(KIND, P))
        for (int rr = 0; rr < BK; ++rr) {
            float gv[NG][8], xv[8], xv2[8];
#pragma unroll
            for (int h = 0; h < NG; ++h) read8(sm.g[h][buf][rr], ty, gv[h]);
            read8(sm.o[buf][rr], tx, xv);
            if constexpr (KIND == BRAYCURTIS) {
#pragma unroll
                for (int j = 0; j < 8; ++j) xv2[j] = KEYS ? xv[j] + 1.0f : xv[j];
            }
#pragma unroll
            for (int i = 0; i < 8; ++i) {
#pragma unroll
                for (int j = 0; j < 8; ++j) {
                    if constexpr (KIND == BRAYCURTIS) {
                        // s2 of x + w: saturate((kx + 1) - (0.5 - kw)) for keys, step(x, -w) for values
                        const float s2 = KEYS ? __saturatef(xv2[j] - ws[i][j]) : step<false>(xv[j], -ws[i][j]);
                        acc[i][j] = fmaf(gv[0][i], step<KEYS>(xv[j], ws[i][j]), fmaf(-gv[NG - 1][i], s2, acc[i][j]));
                    } else if constexpr (SIGN) {
                        acc[i][j] = fmaf(gv[0][i], step<KEYS>(xv[j], ws[i][j]), acc[i][j]);
                    } else {
                        acc[i][j] += elem<KIND, P>(ws[i][j], xv[j], gv[0][i], gv[NG - 1][i], q);
                    }
                }
            }
        }
        if constexpr (SIGN) add_g_share<NG, KIND == BRAYCURTIS ? -1 : 0>(sm.g, buf, ty, tx, gsum);
        if (more) {
#pragma unroll
            for (int h = 0; h < NG; ++h) store_n(sm.g[h][buf ^ 1], rg[h]);
            store_n<T, KEYS, false>(sm.o[buf ^ 1], rx);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        if constexpr (SIGN) gsum[i] = sum_over_row_threads(gsum[i]);
        const int col = col0 + own(ty, i);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const int k = k0 + own(tx, j);
            if (col < v && k < d) dw[static_cast<size_t>(col) * d + k] += SIGN ? gsum[i] - 2.0f * acc[i][j] : acc[i][j];
        }
    }
}

// ---- backward, steps 2 and 3 in one sweep: dx and dW together (the kinds other than the sign kinds) ---------

// Their per-triple term costs a special-function instruction (sqrt, exp2, rcp) or several arithmetic ones; a sweep
// that computes it once for both gradients saves a whole sweep over N x V x D. The dx side is grad_x's; the dW side
// sums each centre's terms over the block's 128 rows (in the thread, then the warp's two ty by one shuffle, then
// the block's 8 warps through shared memory) and adds them to dW with one float4 atomic per 4 features.
// Its block tile is 128 rows x 16 TW features, TW = fused_cols: 8 as grad_x's (one block per SM: 255 registers),
// or 4, the narrow sweep: half the registers, so two blocks (16 warps) share an SM and hide each other's waits
// (a term of several dependent instructions, one of them a special function, leaves one block's 8 warps idle
// about a quarter of the cycles: benchmarks/l1_cuda_check.py's ncu).

// Both gradients' terms of one triple: dx[n, k] += ex, dW[v, k] -= mw, each times pair_scale. Functions of
// u = x - w have dd/dw = -dd/dx, so mw = ex.
// CANBERRA, with s = |x| + |w|: dd/dx = sign(u) (|w| + w sign(x)) / s^2 and dd/dw = -sign(u) (|x| + x sign(w)) / s^2
// are 0 where x and w have opposite signs, and otherwise 2 w sg / s^2 and -2 x sg / s^2 with sg = sign(|x| - |w|)
// (sign(0) = 0 and x or w = 0 included: sg = +-1/2 there, the reference's sign(0) = 0 in |w| + w sign(x)). That
// whole factor is step(x u) - step(-w u), step(z) = saturate(z 2^N + 1/2) in {0, 1/2, 1}: opposite signs give
// 1 - 1. The sweep works on X = x S, W = w S and G S^2 (S = CANBERRA_SCALE, scaled as they are loaded), so each step
// is one FFMA of the scaled operands and exact for |x u| >= 2^-81; s^2 S^2 + FLT_MIN is never 0 (x = w = 0 has
// sg = 0, multiplied first: 0 * c1 * 2^126 = 0) and overflows to a 0 gradient only for s >= 2^24; the sums are
// S times the gradients', which pair_scale = 2 / S undoes (powers of 2: exact). 11 instructions per triple.
constexpr float CANBERRA_SCALE = 0x1p40f;

template <int KIND>
__host__ __device__ constexpr float pair_scale() { return KIND == CANBERRA ? 2.0f / CANBERRA_SCALE : 1.0f; }

// The factor grad_xw applies to its operands as they are loaded: x and w (operand), G (coefficient).
template <int KIND>
__host__ __device__ constexpr float operand_scale() { return KIND == CANBERRA ? CANBERRA_SCALE : 1.0f; }

template <int KIND>
__device__ __forceinline__ float coefficient_scaled(float g) {
    if constexpr (KIND == CANBERRA) {  // G S^2, kept finite (G >= 2^48 would overflow and make 0 * inf)
        return fminf(fmaxf(g * (CANBERRA_SCALE * CANBERRA_SCALE), -FLT_MAX), FLT_MAX);
    } else {
        return g;
    }
}

template <int KIND, int P>
__device__ __forceinline__ void elem_pair(float x, float w, float c1, float c2, const Params& q, float& ex,
                                          float& mw) {
    if constexpr (KIND == CANBERRA) {  // x, w, c1 scaled (above)
        const float u = x - w;
        const float sg = __saturatef(fmaf(x, u, 0.5f)) - __saturatef(fmaf(-w, u, 0.5f));
        const float s = fabsf(x) + fabsf(w);
        const float e = sg * c1 * fast_rcp(fmaf(s, s, FLT_MIN));  // in this order: sg = 0 gives 0
        ex = e * w;
        mw = e * x;
    } else if constexpr (KIND == SMOOTH) {
        // c1 sign(u) = fma(step, 2 c1, -c1), exactly +-c1 or 0 (step = 1/2 at u = 0), so both gradients' terms are
        // one FFMA of e each; a |u| below 2^-127 gives a step between 0 and 1
        const float u = x - w;
        const float e = fast_ex2(fmaf(fabsf(u), q.alpha2, -c2));
        const float step = __saturatef(fmaf(u, 0x1p126f, 0.5f));
        ex = e * fmaf(step, c1 + c1, -c1);
        mw = ex;
    } else {
        ex = elem<KIND, P>(x, w, c1, c2, q);
        mw = ex;
    }
}

constexpr int WARPS = THREADS / 32;

// Features per thread (TW) of the fused sweep for a kind (see above), as measured at the GPT-2 shape on an H200
// (benchmarks/results/l1-cuda-h200-narrow/): the narrow tile for canberra (grad_xw 144 -> 137 ms) and the
// special-function minkowski (p = 1.5: 98 -> 91 ms); chebyshev, chebyshev_smooth and p = 3 run faster wide.
__host__ __device__ constexpr int fused_cols(int kind, int p) {
    return kind == CANBERRA || (kind == MINKOWSKI && p != 3) ? 4 : 8;
}

// dst[0..3] += value, one vector atomic where the architecture has it (sm_90), else four (dst 16-byte aligned).
__device__ __forceinline__ void atomic_add4(float* dst, float4 value) {
#if defined(L1_EMULATE) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900)
    atomicAdd(reinterpret_cast<float4*>(dst), value);
#else
    atomicAdd(dst, value.x), atomicAdd(dst + 1, value.y), atomicAdd(dst + 2, value.z), atomicAdd(dst + 3, value.w);
#endif
}

template <int NG, int W>
struct alignas(16) FusedSmem {
    GradSmem<NG, W> grad;
    float red[2][WARPS][BK][W];  // a stage's per-warp dW partials [warp][centre][feature]; two stages' worth
};

// Adds one finished stage's partials (red = FusedSmem::red[stage parity]) to dW: thread t sums the 8 warps' values
// of centre t / 16, features (t % 16) * F .. + F - 1 (F = W / 16), and subtracts them (times pair_scale) from dW.
template <int KIND, int W>
__device__ __forceinline__ void flush_dw(const float (*red)[BK][W], float* __restrict__ dw, int v, int d, int c0,
                                         int k0, bool vec_dw) {
    constexpr int F = W / 16;
    const int cc = threadIdx.x >> 4, kb = (threadIdx.x & 15) * F;
    float sum[F];
#pragma unroll
    for (int h = 0; h < F; ++h) sum[h] = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) {
#pragma unroll
        for (int q = 0; q < F; q += 4) {
            const float4 part = reinterpret_cast<const float4*>(&red[w][cc][kb + q])[0];
            sum[q] += part.x, sum[q + 1] += part.y, sum[q + 2] += part.z, sum[q + 3] += part.w;
        }
    }
    const int centre = c0 + cc, k = k0 + kb;
    if (centre >= v || k >= d) return;
    constexpr float S = -pair_scale<KIND>();
    float* dst = dw + static_cast<size_t>(centre) * d + k;
    if (vec_dw && k + F <= d) {
#pragma unroll
        for (int q = 0; q < F; q += 4)
            atomic_add4(dst + q, make_float4(S * sum[q], S * sum[q + 1], S * sum[q + 2], S * sum[q + 3]));
    } else {
#pragma unroll
        for (int h = 0; h < F; ++h)
            if (k + h < d) atomicAdd(dst + h, S * sum[h]);
    }
}

// grad_xw's shared-memory stage: G (coefficient_scaled) and the other operand (times operand_scale).
template <int KIND, typename T, int NG, int W>
__device__ __forceinline__ void store_stage(GradSmem<NG, W>& sm, int buf, float rg[NG][8], const Raw8<T>& rw) {
#pragma unroll
    for (int h = 0; h < NG; ++h) {
#pragma unroll
        for (int e = 0; e < 8; ++e) rg[h][e] = coefficient_scaled<KIND>(rg[h][e]);
        store_t(sm.g[h][buf], rg[h]);
    }
    float w[8];
    unpack8<T, false>(rw, w);
#pragma unroll
    for (int e = 0; e < 8; ++e) w[e] *= operand_scale<KIND>();
    store_n<W>(sm.o[buf], w);
}

// Block (row block of the chunk, feature block of W = 16 TW, centre split) as grad_x; per centre the thread's
// 8 x TW terms add into acc (dx) and, summed over its 8 rows, into the stage's dW partials. Stage s writes
// red[s & 1] and adds red[(s - 1) & 1] to dW (written before the barrier that ended stage s - 1, rewritten only
// after the one ending stage s): no barrier beyond grad_x's one per stage.
template <typename T, int KIND, int P, int TW>
__global__ void __launch_bounds__(THREADS, TW == 4 ? 2 : 1)
grad_xw_kernel(const T* __restrict__ a, const T* __restrict__ b, const float* __restrict__ g1,
               const float* __restrict__ g2, int ldg, float* __restrict__ dx, float* __restrict__ dw, int n, int v,
               int d, int row_base, int chunk_rows, int centres_per_split, Params q, bool vec, bool vec_dw) {
    static_assert(!sign_kind(KIND), "the sign kinds' two-instruction steps have their own grad_x / grad_w");
    static_assert(TW == 8 || TW == 4, "the thread tile is 8 x 8 or 8 x 4");
    constexpr int NG = g_arrays(KIND);
    constexpr int W = 16 * TW;  // the block's features
    using Smem = FusedSmem<NG, W>;
    L1_DYNAMIC_SHARED(Smem, fs);
    GradSmem<NG, W>& sm = fs.grad;
    const int ty = threadIdx.x >> 4, tx = threadIdx.x & 15;
    const int warp = threadIdx.x >> 5;
    const bool upper = (ty & 1) != 0;  // the second of the warp's two ty
    const int lrow0 = blockIdx.x * TILE;
    const int k0 = blockIdx.y * W;
    const int vb = blockIdx.z * centres_per_split;
    const int ve = min(vb + centres_per_split, ldg);
    if (vb >= ve) return;
    const float* gs[2] = {g1, NG == 2 ? g2 : g1};
    float xs[8][TW];
    load_row_tile<T, false, TW>(a, row_base, lrow0, k0, chunk_rows, d, xs);
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < TW; ++j) xs[i][j] *= operand_scale<KIND>();
    float acc[8][TW];
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < TW; ++j) acc[i][j] = 0.0f;
    float rg[NG][8];
    Raw8<T> rw;
#pragma unroll
    for (int h = 0; h < NG; ++h) fetch_g_t(gs[h], ldg, lrow0, vb, rg[h]);
    fetch_n<T, W>(b, v, d, vb, k0, vec, rw);
    store_stage<KIND, T, NG, W>(sm, 0, rg, rw);
    __syncthreads();
    int c0 = vb, buf = 0;
    for (; c0 < ve; c0 += BK, buf ^= 1) {
        const bool more = c0 + BK < ve;
        if (more) {
#pragma unroll
            for (int h = 0; h < NG; ++h) fetch_g_t(gs[h], ldg, lrow0, c0 + BK, rg[h]);
            fetch_n<T, W>(b, v, d, c0 + BK, k0, vec, rw);
        }
        if (c0 > vb) flush_dw<KIND, W>(fs.red[buf ^ 1], dw, v, d, c0 - BK, k0, vec_dw);
#pragma unroll(grad_unroll(KIND, P))
        for (int cc = 0; cc < BK; ++cc) {
            float gv[NG][8], wv[TW], col[TW];
#pragma unroll
            for (int h = 0; h < NG; ++h) read8(sm.g[h][buf][cc], ty, gv[h]);
            if constexpr (TW == 8) {
                read8(sm.o[buf][cc], tx, wv);
            } else {
                const float4 q = *reinterpret_cast<const float4*>(&sm.o[buf][cc][tx * 4]);
                wv[0] = q.x, wv[1] = q.y, wv[2] = q.z, wv[3] = q.w;
            }
#pragma unroll
            for (int i = 0; i < 8; ++i) {
#pragma unroll
                for (int j = 0; j < TW; ++j) {
                    float ex, mw;
                    elem_pair<KIND, P>(xs[i][j], wv[j], gv[0][i], gv[NG - 1][i], q, ex, mw);
                    acc[i][j] += ex;
                    col[j] = i == 0 ? mw : col[j] + mw;
                }
            }
            // the warp's two ty share features: the lower keeps the first half of the thread's TW, the upper the
            // second (TW = 8: own(tx, 0..3) and own(tx, 4..7); TW = 4: tx * 4 + 0..1 and + 2..3)
            constexpr int H = TW / 2;
            float keep[H];
#pragma unroll
            for (int h = 0; h < H; ++h) {
                const float give = upper ? col[h] : col[h + H];
                keep[h] = (upper ? col[h + H] : col[h]) + __shfl_xor_sync(0xffffffffu, give, 16);
            }
            float* red = &fs.red[buf][warp][cc][0];
            if constexpr (TW == 8) {
                reinterpret_cast<float4*>(red + (upper ? 64 : 0) + tx * 4)[0] =
                    make_float4(keep[0], keep[1], keep[2], keep[3]);
            } else {
                reinterpret_cast<float2*>(red + tx * 4 + (upper ? 2 : 0))[0] = make_float2(keep[0], keep[1]);
            }
        }
        if (more) store_stage<KIND, T, NG, W>(sm, buf ^ 1, rg, rw);
        __syncthreads();
    }
    flush_dw<KIND, W>(fs.red[buf ^ 1], dw, v, d, c0 - BK, k0, vec_dw);
    constexpr float S = pair_scale<KIND>();
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const int lrow = lrow0 + own(ty, i);
#pragma unroll
        for (int j = 0; j < TW; ++j) {
            const int k = k0 + own_col<TW>(tx, j);
            if (lrow < chunk_rows && k < d) atomicAdd(dx + static_cast<size_t>(row_base + lrow) * d + k, S * acc[i][j]);
        }
    }
}

// ---- launchers -------------------------------------------------------------------------------------------------

inline int cdiv(long a, long b) { return static_cast<int>((a + b - 1) / b); }

// Splits of `steps` units of work over `blocks` blocks each, minimising waves x steps per split (whole waves of
// `slots` resident blocks): a grid of 320 blocks on 264 slots would leave most of the second wave idle.
inline int best_splits(int blocks, int steps, int slots) {
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
int slots_for(K kernel, int smem = 0) {
    int per_sm = 0, device = 0, sms = 0;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, THREADS, smem);
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    return std::max(1, per_sm) * std::max(1, sms);
}

// Whether a block may opt in to `smem` bytes of shared memory on this device: the fused sweep's wide tile needs
// 160 KB (one coefficient array) or 176 KB (two), which fit an H100 / H200 (227 KB), only the first an A100
// (163 KB); its narrow tile 88 KB (one array: canberra, minkowski p != 3), which also fits a GPU with 99 KB (sm_86,
// sm_89). Where it does not fit, grad_x and grad_w run instead.
inline bool smem_fits(int smem) {
    int device = 0, most = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&most, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    return smem <= most;
}

inline Params params_of(const l1cuda::Problem& p) {
    return {p.scale, p.p, 1.0f / p.p, p.p - 1.0f, p.alpha, p.alpha * LOG2E};
}

template <typename T, int KIND, int P>
cudaError_t forward_typed(const l1cuda::Problem& p, l1cuda::Partials& out, cudaStream_t stream) {
    auto kernel = forward_kernel<T, KIND, P>;
    const int row_blocks = cdiv(p.n, TILE), col_tiles = cdiv(p.v, TILE);
    if (out.m == nullptr) {  // first call: only the number of splits
        const int per = cdiv(col_tiles, best_splits(row_blocks, col_tiles, slots_for(kernel)));
        out.splits = cdiv(col_tiles, per);
        return cudaSuccess;
    }
    const int per = cdiv(col_tiles, out.splits);
    L1_LAUNCH(kernel, dim3(row_blocks, out.splits), stream,
        static_cast<const T*>(p.a), static_cast<const T*>(p.b), p.aa, p.bb, p.y, out.m, out.s, out.zsum, out.zt,
        out.sums, p.n, p.v, p.d, per, p.n_exp, p.eps, params_of(p), p.vec);
    return cudaGetLastError();
}

template <typename T, int KIND, int P>
cudaError_t backward_typed(const l1cuda::Problem& p, const l1cuda::Grads& gr, cudaStream_t stream) {
    const int ldg = cdiv(p.v, TILE) * TILE;
    auto coeff = coeff_kernel<T, KIND, P>;
    auto gx = grad_x_kernel<T, KIND, P>;
    auto gw = grad_w_kernel<T, KIND, P>;
    const T* a = static_cast<const T*>(p.a);
    const T* b = static_cast<const T*>(p.b);
    float* g2 = g_arrays(KIND) == 2 ? gr.g + static_cast<size_t>(gr.chunk_rows) * ldg : nullptr;
    const Params q = params_of(p);
    for (int row_base = 0; row_base < p.n; row_base += gr.chunk_rows) {
        const int rows = std::min(gr.chunk_rows, p.n - row_base);
        const int rows_padded = cdiv(rows, TILE) * TILE;
        L1_LAUNCH(coeff, dim3(rows_padded / TILE, ldg / TILE), stream,
            a, b, p.aa, p.bb, p.y, gr.lse, gr.gw, gr.g, g2, ldg, gr.daa, gr.dbb, gr.sums, p.n, p.v, p.d, row_base,
            p.n_exp, p.eps, q, p.smoothing, p.vec);
        if constexpr (!sign_kind(KIND)) {
            constexpr int TW = fused_cols(KIND, P), W = 16 * TW;
            constexpr int smem = static_cast<int>(sizeof(FusedSmem<g_arrays(KIND), W>));
            if (gr.fused && gr.dx != nullptr && gr.dw != nullptr && smem_fits(smem)) {
                auto gxw = grad_xw_kernel<T, KIND, P, TW>;
                cudaFuncSetAttribute(gxw, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
                const int blocks = (rows_padded / TILE) * cdiv(p.d, W);
                const int steps = ldg / BK;
                const int per = cdiv(steps, best_splits(blocks, steps, slots_for(gxw, smem))) * BK;
                const bool vec_dw = p.d % 4 == 0 && reinterpret_cast<uintptr_t>(gr.dw) % 16 == 0;
                L1_LAUNCH_SMEM(gxw, dim3(rows_padded / TILE, cdiv(p.d, W), cdiv(ldg, per)), smem, stream,
                    a, b, gr.g, g2, ldg, gr.dx, gr.dw, p.n, p.v, p.d, row_base, rows, per, q, p.vec, vec_dw);
                const cudaError_t error = cudaGetLastError();
                if (error != cudaSuccess) return error;
                continue;
            }
        }
        if (gr.dx != nullptr) {
            const int blocks = (rows_padded / TILE) * cdiv(p.d, TILE);
            const int steps = ldg / BK;
            const int per = cdiv(steps, best_splits(blocks, steps, slots_for(gx))) * BK;
            L1_LAUNCH(gx, dim3(rows_padded / TILE, cdiv(p.d, TILE), cdiv(ldg, per)), stream,
                a, b, gr.g, g2, ldg, gr.dx, p.n, p.v, p.d, row_base, rows, per, q, p.vec);
        }
        if (gr.dw != nullptr) {
            L1_LAUNCH(gw, dim3(ldg / TILE, cdiv(p.d, TILE)), stream,
                a, b, gr.g, g2, ldg, gr.dw, p.n, p.v, p.d, row_base, rows, rows_padded, q, p.vec);
        }
        const cudaError_t error = cudaGetLastError();
        if (error != cudaSuccess) return error;
    }
    return cudaSuccess;
}

// One kind (and power code) on either input type: bf16 takes the order-key path of the sign kinds.
template <int KIND, int P = 0>
cudaError_t forward_kind(const l1cuda::Problem& p, l1cuda::Partials& out, cudaStream_t stream) {
    return p.bf16 ? forward_typed<__nv_bfloat16, KIND, P>(p, out, stream) : forward_typed<float, KIND, P>(p, out, stream);
}

template <int KIND, int P = 0>
cudaError_t backward_kind(const l1cuda::Problem& p, const l1cuda::Grads& grads, cudaStream_t stream) {
    return p.bf16 ? backward_typed<__nv_bfloat16, KIND, P>(p, grads, stream)
                  : backward_typed<float, KIND, P>(p, grads, stream);
}

// One direction's launch with the kind and power code still open, so a family chooses them in one place for both
// directions (l1_*.cu): launch.template run<KIND, P>().
struct ForwardLaunch {
    const l1cuda::Problem& p;
    l1cuda::Partials& out;
    cudaStream_t stream;
    template <int KIND, int P = 0>
    cudaError_t run() const {
        return forward_kind<KIND, P>(p, out, stream);
    }
};

struct BackwardLaunch {
    const l1cuda::Problem& p;
    const l1cuda::Grads& grads;
    cudaStream_t stream;
    template <int KIND, int P = 0>
    cudaError_t run() const {
        return backward_kind<KIND, P>(p, grads, stream);
    }
};

// A family of two kinds: FIRST where the problem's kind is FIRST, else SECOND.
template <int FIRST, int SECOND, typename Launch>
cudaError_t run_either(const Launch& launch) {
    return launch.p.kind == FIRST ? launch.template run<FIRST>() : launch.template run<SECOND>();
}

}  // namespace
