"""Fused harmonic loss for matmul-type distances: every distance is a function of one dot product per pair,
    EUCLID  d = sqrt(max(aa_i + bb_j - 2 a_i.b_j, 1e-30))      euclidean, mahalanobis (a = x L), diagonal (a = x m^.5)
    COSINE  d = clamp(1 - a_i.b_j ra_i rb_j, 0, 2)               cosine (ra = 1 / max(|a|, TINY), as F.normalize)
    LINEAR  d = max(aa_i + bb_j - 2 a_i.b_j, 0) * scale          hamming_hard (a, b straight-through bits, scale 1/D)
The caller prepares a, b (and aa, bb for LINEAR) with torch ops, so autograd carries gradients back to x, W and the
metric; euclid's squared norms and cosine's normalisation, and their gradients, are handled here.

The rows are processed in chunks (at most CHUNK_BYTES of chunk-sized buffers), the way Liger's fused linear
cross-entropy chunks CE. For each chunk:
- cuBLAS computes the pairwise quantity: for bf16 euclid / cosine directly q = -d^2/2 or -d|a||b| in bf16, from
  operands with the norm terms appended (_shifted_operands); otherwise fp32 dot products;
- one Triton kernel folds -n log(d + eps) into per-row log-sum-exp statistics;
- a second turns the tile into h = dLoss/d(a.b), and two cuBLAS GEMMs turn that into da and db (the appended
  columns also give the row and column sums of h that the norm terms need).
With a mean or sum reduction the gradient is computed in the forward, where the chunk's products already exist
(three GEMM passes in all, as CE eager); the backward only scales and finishes it. reduction="none" needs the
incoming per-row gradient, so its backward recomputes each chunk (four passes). Nothing of size N x V outlives a
chunk: memory beyond inputs and gradients is O(N + V) plus one chunk.

Hand-written Triton GEMMs with the log-sum-exp in their epilogue were tried first and ran at a third of cuBLAS's
speed on an H100 (docs/performance.md); the elementwise kernels here are memory-bound passes over the chunk.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from harmonic.distances import TINY
from harmonic.kernels._loss import (
    INTERPRET,
    LN2,
    fast_log2,
    finish_rows,
    grad_wrt_distance,
    load_tile_terms,
    lse_finish,
    new_partials,
    num_splits,
    online_lse_update,
    reduce_rows,
    row_weights,
)

EUCLID, COSINE, LINEAR = 0, 1, 2
KINDS = {"euclid": EUCLID, "cosine": COSINE, "linear": LINEAR}
# Largest set of per-chunk buffers (fp32 dot products + dLoss/d(a.b)) held at once; 1 GB keeps the peak below CE
# eager's bf16 logits at GPT-2 shape while each chunk's GEMM stays large enough for cuBLAS to run at full speed.
CHUNK_BYTES = 1024 * 2**20
# (rows, columns, num_warps) of one elementwise tile on the GPU: benchmarks/heads_benchmark.py --tune times others.
TILE = (32, 256, 8)


@triton.jit
def _distance(dot, aa, bb, scale, KIND: tl.constexpr, SHIFTED: tl.constexpr):
    """Distance tile from the dot-product tile (aa, bb already broadcast against it), plus the value whose clamp
    decides where gradients pass (strictly inside the clamp's range, as torch.clamp's gradient).

    SHIFTED: the tile holds q from _shifted_operands' GEMM, -d^2 / 2 (euclid) or -d |a| |b| (cosine)."""
    if SHIFTED:
        if KIND == 1:
            raw = -dot * aa * bb
            d = tl.minimum(tl.maximum(raw, 0.0), 2.0)
        else:
            raw = -2.0 * dot
            d = tl.sqrt(tl.maximum(raw, 1e-30))
    elif KIND == 1:  # aa, bb hold the reciprocal norms
        raw = 1.0 - dot * aa * bb
        d = tl.minimum(tl.maximum(raw, 0.0), 2.0)
    else:
        raw = aa + bb - 2.0 * dot
        if KIND == 0:
            d = tl.sqrt(tl.maximum(raw, 1e-30))
        else:
            d = tl.maximum(raw, 0.0) * scale
    return d, raw


@triton.jit
def _stats_kernel(
    dot_ptr,
    aa_ptr,
    bb_ptr,
    y_ptr,
    m_ptr,
    s_ptr,
    zsum_ptr,
    zt_ptr,
    row0,
    rows_in_chunk,
    N,
    V,
    tiles_per_split,
    n_exp,
    eps,
    scale,
    KIND: tl.constexpr,
    SHIFTED: tl.constexpr,
    SMOOTHING: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
):
    """Log-sum-exp statistics of one chunk's rows over one range of V tiles (split = program_id(1)): elementwise
    accumulators over the tiles, one reduction at the end; the target's logit is read directly by split 0."""
    local = tl.program_id(0) * BM + tl.arange(0, BM)
    row_ok = local < rows_in_chunk
    rows = row0 + local
    split = tl.program_id(1)
    aa = tl.load(aa_ptr + rows, mask=row_ok, other=0.0)
    m2 = tl.full((BM, BN), -1e30, tl.float32)  # finite: masked positions (also -1e30) never make inf - inf
    s2 = tl.zeros((BM, BN), tl.float32)
    zsum2 = tl.zeros((BM, BN), tl.float32)
    first = split * tiles_per_split
    last = tl.minimum(first + tiles_per_split, tl.cdiv(V, BN))
    for t in range(first, last):
        cols = t * BN + tl.arange(0, BN)
        col_ok = cols < V
        tile_ok = row_ok[:, None] & col_ok[None, :]
        bb = tl.load(bb_ptr + cols, mask=col_ok, other=0.0)
        dot = tl.load(dot_ptr + local[:, None] * V + cols[None, :], mask=tile_ok, other=0.0).to(tl.float32)
        d, raw = _distance(dot, aa[:, None], bb[None, :], scale, KIND, SHIFTED)
        z2 = tl.where(tile_ok, -n_exp * fast_log2(d + eps), -1e30)
        m2, s2 = online_lse_update(z2, m2, s2)
        if SMOOTHING:
            zsum2 += tl.where(tile_ok, z2, 0.0)
    m, s = lse_finish(m2, s2)
    out = split * N + rows
    tl.store(m_ptr + out, m, mask=row_ok)
    tl.store(s_ptr + out, s, mask=row_ok)
    tl.store(zsum_ptr + out, tl.sum(zsum2, axis=1) * LN2, mask=row_ok)
    y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
    target_ok = row_ok & (y >= 0) & (y < V) & (split == 0)
    dot_t = tl.load(dot_ptr + local * V + y, mask=target_ok, other=0.0).to(tl.float32)
    bb_t = tl.load(bb_ptr + y, mask=target_ok, other=0.0)
    d_t, raw_t = _distance(dot_t[:, None], aa[:, None], bb_t[:, None], scale, KIND, SHIFTED)
    z_t = tl.sum(-n_exp * tl.log(d_t + eps), axis=1)
    tl.store(zt_ptr + out, tl.where(target_ok, z_t, 0.0), mask=row_ok)


@triton.jit
def _grad_kernel(
    dot_ptr,
    aa_ptr,
    bb_ptr,
    y_ptr,
    lse_ptr,
    g_ptr,
    h_ptr,
    row0,
    rows_in_chunk,
    V,
    n_exp,
    eps,
    scale,
    smoothing,
    KIND: tl.constexpr,
    SHIFTED: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
):
    """One tile of h = dLoss/d(a.b), written to the chunk's h buffer: purely elementwise (the row and column sums
    that aa and bb need come out of the GEMMs, see _sweep)."""
    local = tl.program_id(0) * BM + tl.arange(0, BM)
    row_ok = local < rows_in_chunk
    rows = row0 + local
    cols = tl.program_id(1) * BN + tl.arange(0, BN)
    col_ok = cols < V
    y, lse, g, aa, bb = load_tile_terms(y_ptr, lse_ptr, g_ptr, aa_ptr, bb_ptr, rows, row_ok, cols, col_ok)
    tile = local[:, None] * V + cols[None, :]
    tile_ok = row_ok[:, None] & col_ok[None, :]
    dot = tl.load(dot_ptr + tile, mask=tile_ok, other=0.0).to(tl.float32)
    d, raw = _distance(dot, aa[:, None], bb[None, :], scale, KIND, SHIFTED)
    gd = grad_wrt_distance(d, eps, cols, tile_ok, y, lse, g, n_exp, smoothing, V)
    if KIND == 1:  # dd/d(a.b) = -ra_i rb_j inside the clamp
        h = tl.where((raw > 0.0) & (raw < 2.0), -gd * aa[:, None] * bb[None, :], 0.0)
    elif KIND == 0:
        h = tl.where(raw > 1e-30, -gd / d, 0.0)  # -2 dLoss/draw, draw = dd * 2d
    else:
        h = tl.where(raw > 0.0, -2.0 * scale * gd, 0.0)
    tl.store(h_ptr + tile, h.to(h_ptr.dtype.element_ty), mask=tile_ok)


@triton.jit
def _row_dots_kernel(p_ptr, q_ptr, out_ptr, rows, D, stride_p, stride_q, BM: tl.constexpr, BK: tl.constexpr):
    """out_i = sum_k p_ik q_ik, accumulated in fp32 from 16-bit or fp32 rows (no fp32 copy of a matrix)."""
    r = tl.program_id(0) * BM + tl.arange(0, BM)
    acc = tl.zeros((BM, BK), tl.float32)
    for k0 in range(0, D, BK):
        ks = k0 + tl.arange(0, BK)
        ok = (r < rows)[:, None] & (ks < D)[None, :]
        p = tl.load(p_ptr + r[:, None] * stride_p + ks[None, :], mask=ok, other=0.0).to(tl.float32)
        q = tl.load(q_ptr + r[:, None] * stride_q + ks[None, :], mask=ok, other=0.0).to(tl.float32)
        acc += p * q
    tl.store(out_ptr + r, tl.sum(acc, axis=1), mask=r < rows)


def _row_dots(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products of two (rows, D) matrices with unit column stride, in fp32."""
    out = torch.empty(p.shape[0], device=p.device, dtype=torch.float32)
    bm, bk = (16, 16) if INTERPRET else (32, 128)
    _row_dots_kernel[(triton.cdiv(p.shape[0], bm),)](p, q, out, p.shape[0], p.shape[1], p.stride(0), q.stride(0),
                                                     BM=bm, BK=bk)  # fmt: skip
    return out


def _reciprocal_norms(t: torch.Tensor) -> torch.Tensor:
    """1 / max(|t_i|, TINY): F.normalize's scaling of each row."""
    return 1.0 / _row_dots(t, t).sqrt().clamp_min(TINY)


@triton.jit
def _combine_kernel(
    p_ptr, t_ptr, coef_ptr, scale_ptr, out_ptr, rows, D, stride_p,
    HAS_COEF: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr,
):  # fmt: skip
    """out = scale p + coef_i t_i, rounded to out's dtype: the last step of every gradient in one pass."""
    r = tl.program_id(0) * BM + tl.arange(0, BM)
    scale = tl.load(scale_ptr)
    coef = tl.zeros((BM,), tl.float32)
    if HAS_COEF:
        coef = tl.load(coef_ptr + r, mask=r < rows, other=0.0)
    for k0 in range(0, D, BK):
        ks = k0 + tl.arange(0, BK)
        ok = (r < rows)[:, None] & (ks < D)[None, :]
        val = tl.load(p_ptr + r[:, None] * stride_p + ks[None, :], mask=ok, other=0.0) * scale
        if HAS_COEF:
            val += coef[:, None] * tl.load(t_ptr + r[:, None] * D + ks[None, :], mask=ok, other=0.0).to(tl.float32)
        tl.store(out_ptr + r[:, None] * D + ks[None, :], val.to(out_ptr.dtype.element_ty), mask=ok)


def _combine(p: torch.Tensor, t: torch.Tensor, coef: torch.Tensor | None, scale: torch.Tensor) -> torch.Tensor:
    """scale p + coef[:, None] t in t's dtype; p fp32 (rows, >= D) with unit column stride, t contiguous."""
    out = torch.empty_like(t)
    bm, bk = (16, 16) if INTERPRET else (32, 128)
    _combine_kernel[(triton.cdiv(t.shape[0], bm),)](
        p, t, coef if coef is not None else p, scale, out, t.shape[0], t.shape[1], p.stride(0),
        HAS_COEF=coef is not None, BM=bm, BK=bk,
    )  # fmt: skip
    return out


def _tile():
    """(rows, columns, num_warps) of an elementwise tile; small under the CPU interpreter (partial tiles tested)."""
    return (16, 16, 4) if INTERPRET else TILE


@functools.cache
def _has_out_dtype(device_type: str) -> bool:
    """Whether this torch has mm/addmm(..., out_dtype=float32) for 16-bit operands on this device (CUDA, torch 2.9+):
    fp32 results straight from cuBLAS's fp32 accumulator, without a rounding to 16 bits."""
    try:
        p = torch.ones(2, 2, device=device_type, dtype=torch.bfloat16)
        acc = torch.zeros(2, 2, device=device_type)
        torch.addmm(acc, p, p, out_dtype=torch.float32, out=acc)
        return bool((acc == 2.0).all()) and torch.mm(p, p, out_dtype=torch.float32).dtype == torch.float32
    except (TypeError, RuntimeError, NotImplementedError):
        return False


def _mm(p: torch.Tensor, q: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """p @ q as float32, into `out` (contiguous fp32) if given (fp32 accumulation; 16-bit operands stay 16-bit
    where cuBLAS can return fp32)."""
    if p.dtype != torch.float32 and _has_out_dtype(p.device.type):
        return torch.mm(p, q, out_dtype=torch.float32, out=out)
    return torch.mm(p.float(), q.float(), out=out)


def _add_mm(acc: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> None:
    """acc += p @ q, acc float32."""
    if p.dtype != torch.float32 and _has_out_dtype(p.device.type):
        torch.addmm(acc, p, q, out_dtype=torch.float32, out=acc)
    else:
        acc.addmm_(p.float(), q.float())


def _chunk_rows(n: int, classes: int, bytes_per_pair: int, block: int) -> int:
    """Rows per chunk: equal chunks, a multiple of the tile, buffers (dot products + h) within CHUNK_BYTES."""
    most = max(block, CHUNK_BYTES // (classes * bytes_per_pair))
    chunks = triton.cdiv(n, most)
    return min(n, triton.cdiv(triton.cdiv(n, chunks), block) * block)


def _with_ones_column(t: torch.Tensor) -> torch.Tensor:
    """[t | 1 | 0 ...]: D + 8 columns (rows stay 16-byte aligned for cuBLAS), so that h @ [b | 1] also returns the
    row sums of h and h^T @ [a | 1] its column sums, which the gradients through aa and bb need."""
    pad = torch.zeros(t.shape[0], 8, device=t.device, dtype=t.dtype)
    pad[:, 0] = 1.0
    return torch.cat([t, pad], dim=1)


@triton.jit
def _augment_kernel(t_ptr, own_ptr, out_ptr, rows, D, KIND: tl.constexpr, A_SIDE: tl.constexpr,
                    BM: tl.constexpr, BK: tl.constexpr):  # fmt: skip
    """One side of _shifted_operands: copy the rows while summing their squares, store the row's norm term (euclid:
    |t|^2; cosine: 1 / max(|t|, TINY)) in own, then 16 extra bf16 columns made of that term's pieces."""
    r = tl.program_id(0) * BM + tl.arange(0, BM)
    r_ok = r < rows
    squares = tl.zeros((BM, BK), tl.float32)
    for k0 in range(0, D, BK):
        ks = k0 + tl.arange(0, BK)
        ok = r_ok[:, None] & (ks < D)[None, :]
        v = tl.load(t_ptr + r[:, None] * D + ks[None, :], mask=ok, other=0.0)
        tl.store(out_ptr + r[:, None] * (D + 16) + ks[None, :], v.to(tl.bfloat16), mask=ok)
        v = v.to(tl.float32)
        squares += v * v
    own = tl.sum(squares, axis=1)
    if KIND == 1:
        own = tl.maximum(tl.sqrt_rn(own), 1e-30)  # cosine: F.normalize's clamped norm (TINY)
        tl.store(own_ptr + r, 1.0 / own, mask=r_ok)
    else:
        tl.store(own_ptr + r, own, mask=r_ok)
    # three bf16 pieces whose sum is the fp32 value to about 2^-24 relative
    p1 = own.to(tl.bfloat16).to(tl.float32)
    p2 = (own - p1).to(tl.bfloat16).to(tl.float32)
    p3 = (own - p1 - p2).to(tl.bfloat16).to(tl.float32)
    c = tl.arange(0, 16)[None, :]
    if KIND == 0:  # a side [1 1 1 aa1 aa2 aa3], b side [-bb1/2 -bb2/2 -bb3/2 -1/2 -1/2 -1/2]
        piece = tl.where(c % 3 == 0, p1[:, None], tl.where(c % 3 == 1, p2[:, None], p3[:, None]))
        if A_SIDE:
            extra = tl.where(c < 3, 1.0, tl.where(c < 6, piece, 0.0))
        else:
            extra = tl.where(c < 3, -0.5 * piece, tl.where(c < 6, -0.5, 0.0))
    else:  # a side [n1 n1 n1 n2 n2 n2 n3 n3 n3], b side -[m1 m2 m3 m1 m2 m3 m1 m2 m3]: the 9 products
        if A_SIDE:
            index = c // 3
            sign = 1.0
        else:
            index = c % 3
            sign = -1.0
        piece = tl.where(index == 0, p1[:, None], tl.where(index == 1, p2[:, None], p3[:, None]))
        extra = tl.where(c < 9, sign * piece, 0.0)
    tl.store(out_ptr + r[:, None] * (D + 16) + D + c, extra.to(tl.bfloat16), mask=r_ok[:, None])


def _shifted_operands(kind: int, a: torch.Tensor, b: torch.Tensor):
    """bf16 operands [a | 16 columns], [b | 16 columns] whose GEMM (fp32 accumulation) directly gives a small,
    well-scaled q, so that q can be stored in bf16 (half the bytes of fp32 dot products) without losing d:
        euclid  q = a.b - aa/2 - bb/2 = -d^2 / 2            (aa, bb = squared norms)
        cosine  q = a.b - |a| |b| = -d |a| |b|             (aa, bb = reciprocal norms 1 / max(|.|, TINY))
    The norm terms enter as three bf16 pieces each, exact to fp32 precision, and a, b unchanged, so the
    cancellation happens in the fp32 accumulator; only q itself is rounded (relative 2^-9). A plain a.b stored in
    bf16 would lose d whenever x is close to a centre (|a||b| >> d).

    The same operands serve the gradient GEMMs: for euclid, column D of [a | ...] is 1 and column D + 3 of
    [b | ...] is -1/2, so h^T @ [a | ...] and h @ [b | ...] also return the column and row sums of h.

    Returns (a_q, b_q, aa, bb): the kernel also computes the norm terms while it copies the rows."""
    bm, bk = (16, 16) if INTERPRET else (32, 128)
    operands, terms = [], []
    for t, a_side in ((a, True), (b, False)):
        aug = torch.empty(t.shape[0], t.shape[1] + 16, device=t.device, dtype=torch.bfloat16)
        own = torch.empty(t.shape[0], device=t.device, dtype=torch.float32)
        _augment_kernel[(triton.cdiv(t.shape[0], bm),)](t, own, aug, t.shape[0], t.shape[1], KIND=kind,
                                                        A_SIDE=a_side, BM=bm, BK=bk)  # fmt: skip
        operands.append(aug)
        terms.append(own)
    return (*operands, *terms)


def _uses_shifted_operands(kind: int, a: torch.Tensor) -> bool:
    """bf16 euclid / cosine: the GEMM returns the distance's own small quantity in bf16 (_shifted_operands);
    otherwise fp32 dot products (fp16 could not hold d^2 / 2 for d > 362)."""
    return a.dtype == torch.bfloat16 and kind in (EUCLID, COSINE)


def _mm_bf16(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """p @ q with fp32 accumulation and bf16 output (cuBLAS; on the CPU the same rounding, emulated)."""
    if p.is_cuda:
        return torch.mm(p, q)
    return torch.mm(p.float(), q.float()).to(torch.bfloat16)


def _sweep(a, b, aa, bb, y, kind, n_exp, eps, scale, smoothing, ignore_index, *, shifted_operands=None, lse=None,
           g=None, grads=True):  # fmt: skip
    """One pass over the row chunks: (lse, per-row losses, gradient GEMM results or None).

    lse None: computes the loss statistics per chunk (and, with grads, the gradient from the chunk's own lse);
    g: per-row weights of the loss in the gradient. lse given: only the gradient (the backward of "none").
    The gradient results are (P, Q, rowsum, colsum): P = h @ [b | ...], Q = h^T @ [a | ...] (first D columns
    used) and the row / column sums of h for the kinds with norm terms (else None).
    """
    n, dim = a.shape
    classes = b.shape[0]
    bm, bn, warps = _tile()
    # fp16 cannot hold p_ij / N (underflow): its dLoss/d(a.b) is fp32 and so are its GEMMs.
    h_dtype = torch.float32 if a.dtype in (torch.float16, torch.float32) else a.dtype
    shifted = shifted_operands is not None  # (a_q, b_q) from _shifted_operands
    chunk = _chunk_rows(n, classes, (2 if shifted else 4) + h_dtype.itemsize, bm)
    if shifted:
        a_mm, b_mm = shifted_operands
    elif grads:
        a_mm, b_mm = (a.float(), b.float()) if h_dtype != a.dtype else (a, b)
        if kind != COSINE:
            a_mm, b_mm = _with_ones_column(a_mm), _with_ones_column(b_mm)
    stats = per_row = None
    if lse is None:
        col_tiles = triton.cdiv(classes, bn)
        splits = num_splits(triton.cdiv(chunk, bm), col_tiles, a.device)
        tiles_per_split = triton.cdiv(col_tiles, splits)
        splits = triton.cdiv(col_tiles, tiles_per_split)
        stats = new_partials(splits, n, a.device)
        lse = torch.empty(n, device=a.device, dtype=torch.float32)
        per_row = torch.empty(n, device=a.device, dtype=torch.float32)
    if grads:
        h = torch.empty(chunk, classes, device=a.device, dtype=h_dtype)
        da = torch.empty(n, b_mm.shape[1], device=a.device, dtype=torch.float32)
        db = torch.empty(classes, b_mm.shape[1], device=a.device, dtype=torch.float32)
    for row0 in range(0, n, chunk):
        rows = min(chunk, n - row0)
        dot = _mm_bf16(a_mm[row0 : row0 + rows], b_mm.t()) if shifted else _mm(a[row0 : row0 + rows], b.t())
        if stats is not None:
            _stats_kernel[(triton.cdiv(rows, bm), splits)](
                dot, aa, bb, y, *stats, row0, rows, n, classes, tiles_per_split, n_exp, eps, scale,
                KIND=kind, SHIFTED=shifted, SMOOTHING=smoothing > 0, BM=bm, BN=bn, num_warps=warps,
            )  # fmt: skip
            finish_rows(stats, y, lse, per_row, row0, rows, classes, smoothing, ignore_index)
        if not grads:
            continue
        part = h[:rows]
        _grad_kernel[(triton.cdiv(rows, bm), triton.cdiv(classes, bn))](
            dot, aa, bb, y, lse, g, part, row0, rows, classes, n_exp, eps, scale, smoothing,
            KIND=kind, SHIFTED=shifted, BM=bm, BN=bn, num_warps=warps,
        )  # fmt: skip
        del dot  # its memory is reused by the next chunk's dot products
        _mm(part, b_mm, out=da[row0 : row0 + rows])
        if row0 == 0:
            _mm(part.t(), a_mm[:rows], out=db)
        else:
            _add_mm(db, part.t(), a_mm[row0 : row0 + rows])
    if not grads:
        return lse, per_row, None
    if kind == COSINE:
        sums = (None, None)
    elif shifted:  # [b | ...] column D + 3 is -1/2, [a | ...] column D is 1
        sums = (-2.0 * da[:, dim + 3], db[:, dim])
    else:  # the ones columns
        sums = (da[:, dim], db[:, dim])
    return lse, per_row, (da, db, *sums)


def _final_grads(kind, a, b, p, q, rowsum, colsum, aa, bb, scale):
    """(da, db in the input dtypes, daa, dbb) from the GEMM results P = h @ [b | ...], Q = h^T @ [a | ...] (first
    D columns) and the row / column sums of h, times scale (the incoming gradient when the sweep ran in the
    forward, else 1), in one pass per matrix.

    euclid, linear: h = -2 dLoss/draw and raw = aa + bb - 2 a.b, so dLoss/daa_i = -(sum_j h_ij) / 2. Euclidean's
    aa = |a|^2 and bb = |b|^2 belong to this Function, so their gradient goes straight into da:
    2 a_i dLoss/daa_i = -a_i sum_j h_ij.
    cosine: aa, bb are the reciprocal norms r and h already carries them, so P_i = r_i dLoss/d a_hat_i; the
    normalisation's Jacobian r (I - a_hat a_hat^T) then gives P_i - r_i^2 (a_i . P_i) a_i (no projection where
    |a| <= TINY, F.normalize's constant branch).
    """
    scale = torch.ones((), device=a.device) if scale is None else scale.float().reshape(())
    dim = a.shape[1]
    p, q = p[:, :dim], q[:, :dim]
    if kind == COSINE:
        coef_a = -scale * torch.where(aa < 1.0 / TINY, _row_dots(p, a) * aa * aa, 0.0)
        coef_b = -scale * torch.where(bb < 1.0 / TINY, _row_dots(q, b) * bb * bb, 0.0)
        return _combine(p, a, coef_a, scale), _combine(q, b, coef_b, scale), None, None
    if kind == EUCLID:
        return _combine(p, a, -scale * rowsum, scale), _combine(q, b, -scale * colsum, scale), None, None
    return _combine(p, a, None, scale), _combine(q, b, None, scale), -0.5 * scale * rowsum, -0.5 * scale * colsum


class MatmulHeadLoss(torch.autograd.Function):
    """Harmonic loss of prepared inputs a (N x D), b (V x D), aa (N), bb (V): see the module docstring."""

    @staticmethod
    def forward(ctx, a, b, aa, bb, y, kind, n_exp, eps, scale, smoothing, ignore_index, reduction):
        a, b = a.contiguous(), b.contiguous()
        operands = None
        # euclid: aa, bb = squared norms; cosine: reciprocal norms. Their gradient is handled in _final_grads.
        if _uses_shifted_operands(kind, a):
            *operands, aa, bb = _shifted_operands(kind, a, b)
        elif kind == EUCLID:
            aa, bb = _row_dots(a, a), _row_dots(b, b)
        elif kind == COSINE:
            aa, bb = _reciprocal_norms(a), _reciprocal_norms(b)
        aa, bb = aa.float().contiguous(), bb.float().contiguous()
        needs_grad = any(ctx.needs_input_grad[:4])
        valid = y != ignore_index
        count = valid.sum()
        # mean / sum: the loss's weight of every row is known now, so the gradient comes out of the same sweep.
        early = needs_grad and reduction != "none"
        g = row_weights(torch.ones((), device=a.device), valid, count, reduction) if early else None
        consts = (kind, n_exp, eps, scale, smoothing, ignore_index)
        lse, per_row, grads = _sweep(a, b, aa, bb, y, *consts, shifted_operands=operands, g=g, grads=early)
        if early:  # the backward only scales and finishes the GEMM results
            ctx.save_for_backward(a, b, aa, bb, *grads)
        elif needs_grad:
            ctx.save_for_backward(a, b, aa, bb, y, lse, valid, count)
        ctx.early, ctx.consts, ctx.reduction = early, consts, reduction
        return reduce_rows(per_row, count, reduction)

    @staticmethod
    def backward(ctx, grad_out):
        kind = ctx.consts[0]
        if ctx.early:
            a, b, aa, bb, *results = ctx.saved_tensors
            da, db, daa, dbb = _final_grads(kind, a, b, *results, aa, bb, grad_out)
        else:
            a, b, aa, bb, y, lse, valid, count = ctx.saved_tensors
            g = row_weights(grad_out, valid, count, ctx.reduction)
            operands = _shifted_operands(kind, a, b)[:2] if _uses_shifted_operands(kind, a) else None
            _, _, results = _sweep(a, b, aa, bb, y, *ctx.consts, shifted_operands=operands, lse=lse, g=g)
            da, db, daa, dbb = _final_grads(kind, a, b, *results, aa, bb, None)
        grads_aa = daa if ctx.needs_input_grad[2] else None
        grads_bb = dbb if ctx.needs_input_grad[3] else None
        return da, db, grads_aa, grads_bb, *([None] * 8)
