"""Fused harmonic loss for matmul-type distances: every distance is a function of one dot product per pair,
    EUCLID  d = sqrt(max(aa_i + bb_j - 2 a_i.b_j, 1e-30))      euclidean, mahalanobis (a = x L), diagonal (a = x m^.5)
    COSINE  d = clamp(1 - a_i.b_j, 0, 2)                         cosine (a, b unit rows)
    LINEAR  d = max(aa_i + bb_j - 2 a_i.b_j, 0) * scale          hamming_hard (a, b straight-through bits, scale 1/D)
The caller prepares a, b, aa, bb with ordinary torch ops, so autograd carries gradients back to x, W and the metric.

Forward: one Triton kernel; each program owns a block of rows and a range of V tiles, computes the dot products
with tensor-core tiles (fp32 accumulation) and folds -n log(d + eps) into a running log-sum-exp: the N x V matrix is
never written. Backward: a second kernel recomputes each tile, writes dLoss/d(a.b) for a chunk of rows (at most
CHUNK_BYTES) plus the row and column sums for aa and bb, and two cuBLAS GEMMs turn it into da and db (the way
Liger's fused linear cross-entropy chunks CE). Memory beyond inputs and gradients: O(N + V) + one chunk.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from harmonic.kernels._loss import (
    INTERPRET,
    combine_partials,
    grad_wrt_distance,
    lse_stats_update,
    new_partials,
    num_splits,
    row_weights,
)

EUCLID, COSINE, LINEAR = 0, 1, 2
KINDS = {"euclid": EUCLID, "cosine": COSINE, "linear": LINEAR}
# Largest dLoss/d(a.b) chunk the backward writes at once (rows x V); 256 MB keeps it well under CE eager's logits.
CHUNK_BYTES = 256 * 2**20
UPCAST_DOT = tl.constexpr(INTERPRET)
# (BM, BN, BK, num_warps, num_stages) for bf16/fp16 on the GPU: the fastest of those benchmarks/heads_benchmark.py
# tunes over on an H100 (docs/performance.md).
BLOCK_16BIT = (128, 128, 64, 8, 4)


@triton.jit
def _dot_tile(
    a_ptr,
    b_ptr,
    rows,
    cols,
    row_ok,
    col_ok,
    D,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    PRECISION: tl.constexpr,
):
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, D, BK):
        ks = k0 + tl.arange(0, BK)
        k_ok = ks < D
        a = tl.load(a_ptr + rows[:, None] * D + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(b_ptr + cols[:, None] * D + ks[None, :], mask=col_ok[:, None] & k_ok[None, :], other=0.0)
        if UPCAST_DOT:  # Triton's CPU interpreter cannot multiply 16-bit tiles
            a, b = a.to(tl.float32), b.to(tl.float32)
        acc = tl.dot(a, tl.trans(b), acc, input_precision=PRECISION)
    return acc


@triton.jit
def _distance(dot, aa, bb, scale, KIND: tl.constexpr):
    """Distance tile from the dot-product tile, plus the value whose clamp decides where gradients pass (strictly
    inside the clamp's range, as torch.clamp's gradient)."""
    if KIND == 1:
        raw = 1.0 - dot
        d = tl.minimum(tl.maximum(raw, 0.0), 2.0)
    else:
        raw = aa[:, None] + bb[None, :] - 2.0 * dot
        if KIND == 0:
            d = tl.sqrt(tl.maximum(raw, 1e-30))
        else:
            d = tl.maximum(raw, 0.0) * scale
    return d, raw


@triton.jit
def _forward_kernel(
    a_ptr,
    b_ptr,
    aa_ptr,
    bb_ptr,
    y_ptr,
    m_ptr,
    s_ptr,
    zsum_ptr,
    zt_ptr,
    N,
    V,
    D,
    tiles_per_split,
    n_exp,
    eps,
    scale,
    KIND: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    PRECISION: tl.constexpr,
):
    pid_m = tl.program_id(0)
    split = tl.program_id(1)
    rows = pid_m * BM + tl.arange(0, BM)
    row_ok = rows < N
    y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
    aa = tl.load(aa_ptr + rows, mask=row_ok, other=0.0)
    m = tl.full((BM,), float("-inf"), tl.float32)
    s = tl.zeros((BM,), tl.float32)
    zsum = tl.zeros((BM,), tl.float32)
    zt = tl.zeros((BM,), tl.float32)
    first = split * tiles_per_split
    last = tl.minimum(first + tiles_per_split, tl.cdiv(V, BN))
    for t in range(first, last):
        cols = t * BN + tl.arange(0, BN)
        col_ok = cols < V
        bb = tl.load(bb_ptr + cols, mask=col_ok, other=0.0)
        dot = _dot_tile(a_ptr, b_ptr, rows, cols, row_ok, col_ok, D, BM, BN, BK, PRECISION)
        d, raw = _distance(dot, aa, bb, scale, KIND)
        m, s, zsum, zt = lse_stats_update(d, cols, col_ok, y, m, s, zsum, zt, n_exp, eps)
    out = split * N + rows
    tl.store(m_ptr + out, m, mask=row_ok)
    tl.store(s_ptr + out, s, mask=row_ok)
    tl.store(zsum_ptr + out, zsum, mask=row_ok)
    tl.store(zt_ptr + out, zt, mask=row_ok)


@triton.jit
def _backward_kernel(
    a_ptr,
    b_ptr,
    aa_ptr,
    bb_ptr,
    y_ptr,
    lse_ptr,
    g_ptr,
    h_ptr,
    daa_ptr,
    dbb_ptr,
    row0,
    rows_in_chunk,
    V,
    D,
    n_exp,
    eps,
    scale,
    smoothing,
    KIND: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    PRECISION: tl.constexpr,
):
    local = tl.program_id(0) * BM + tl.arange(0, BM)
    row_ok = local < rows_in_chunk
    rows = row0 + local
    cols = tl.program_id(1) * BN + tl.arange(0, BN)
    col_ok = cols < V
    y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)
    aa = tl.load(aa_ptr + rows, mask=row_ok, other=0.0)
    bb = tl.load(bb_ptr + cols, mask=col_ok, other=0.0)
    dot = _dot_tile(a_ptr, b_ptr, rows, cols, row_ok, col_ok, D, BM, BN, BK, PRECISION)
    d, raw = _distance(dot, aa, bb, scale, KIND)
    gd = grad_wrt_distance(d, cols, col_ok, y, lse, g, n_exp, eps, smoothing, V)
    if KIND == 1:
        h = tl.where((raw > 0.0) & (raw < 2.0), -gd, 0.0)
    else:
        if KIND == 0:
            graw = tl.where(raw > 1e-30, gd / (2.0 * d), 0.0)
        else:
            graw = tl.where(raw > 0.0, gd * scale, 0.0)
        h = -2.0 * graw
        tl.atomic_add(daa_ptr + rows, tl.sum(graw, axis=1), mask=row_ok)
        tl.atomic_add(dbb_ptr + cols, tl.sum(graw, axis=0), mask=col_ok)
    h_ptrs = h_ptr + local[:, None] * V + cols[None, :]
    tl.store(h_ptrs, h.to(h_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


def _blocks(dtype: torch.dtype):
    """(BM, BN, BK, num_warps, num_stages, dot precision) for this input dtype."""
    precision = "tf32x3" if dtype == torch.float32 else "tf32"  # fp32 inputs: ~fp32-accurate dot products
    if INTERPRET:
        return 16, 16, 16, 4, 1, precision
    if dtype == torch.float32:
        return 64, 64, 32, 4, 3, precision
    return (*BLOCK_16BIT, precision)


def _mm(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """p @ q with fp32 output (cuBLAS accumulates in fp32; asking for fp32 output skips the rounding to 16 bits)."""
    if p.is_cuda and p.dtype in (torch.bfloat16, torch.float16):
        try:
            return torch.mm(p, q, out_dtype=torch.float32)
        except (TypeError, RuntimeError, NotImplementedError):
            pass
    return torch.mm(p, q).float()


class MatmulHeadLoss(torch.autograd.Function):
    """Harmonic loss of prepared inputs a (N x D), b (V x D), aa (N), bb (V): see the module docstring."""

    @staticmethod
    def forward(ctx, a, b, aa, bb, y, kind, n_exp, eps, scale, smoothing, ignore_index, reduction):
        a, b = a.contiguous(), b.contiguous()
        aa, bb = aa.float().contiguous(), bb.float().contiguous()
        n, dim = a.shape
        classes = b.shape[0]
        bm, bn, bk, warps, stages, precision = _blocks(a.dtype)
        row_blocks, col_tiles = triton.cdiv(n, bm), triton.cdiv(classes, bn)
        splits = num_splits(row_blocks, col_tiles, a.device)
        tiles_per_split = triton.cdiv(col_tiles, splits)
        splits = triton.cdiv(col_tiles, tiles_per_split)
        m, s, zsum, zt = new_partials(splits, n, a.device)
        _forward_kernel[(row_blocks, splits)](
            a,
            b,
            aa,
            bb,
            y,
            m,
            s,
            zsum,
            zt,
            n,
            classes,
            dim,
            tiles_per_split,
            n_exp,
            eps,
            scale,
            KIND=kind,
            BM=bm,
            BN=bn,
            BK=bk,
            PRECISION=precision,
            num_warps=warps,
            num_stages=stages,
        )
        loss, lse, valid, count = combine_partials(m, s, zsum, zt, y, classes, smoothing, ignore_index, reduction)
        ctx.save_for_backward(a, b, aa, bb, y, lse, valid, count)
        ctx.args = (kind, n_exp, eps, scale, smoothing, reduction)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        a, b, aa, bb, y, lse, valid, count = ctx.saved_tensors
        kind, n_exp, eps, scale, smoothing, reduction = ctx.args
        n, dim = a.shape
        classes = b.shape[0]
        g = row_weights(grad_out, valid, count, reduction)
        bm, bn, bk, warps, stages, precision = _blocks(a.dtype)
        # fp16 cannot hold p_ij / N (underflow): its chunk is fp32 and so are its GEMMs.
        h_dtype = torch.float32 if a.dtype == torch.float16 else a.dtype
        a_mm, b_mm = (a.float(), b.float()) if h_dtype != a.dtype else (a, b)
        chunk = max(bm, min(n, CHUNK_BYTES // (classes * h_dtype.itemsize)) // bm * bm)
        h = torch.empty(min(chunk, n), classes, device=a.device, dtype=h_dtype)
        da = torch.empty(n, dim, device=a.device, dtype=torch.float32)
        db = torch.zeros(classes, dim, device=a.device, dtype=torch.float32)
        daa = torch.zeros(n, device=a.device, dtype=torch.float32)
        dbb = torch.zeros(classes, device=a.device, dtype=torch.float32)
        for row0 in range(0, n, chunk):
            rows = min(chunk, n - row0)
            grid = (triton.cdiv(rows, bm), triton.cdiv(classes, bn))
            _backward_kernel[grid](
                a,
                b,
                aa,
                bb,
                y,
                lse,
                g,
                h,
                daa,
                dbb,
                row0,
                rows,
                classes,
                dim,
                n_exp,
                eps,
                scale,
                smoothing,
                KIND=kind,
                BM=bm,
                BN=bn,
                BK=bk,
                PRECISION=precision,
                num_warps=warps,
                num_stages=stages,
            )
            part = h[:rows]
            da[row0 : row0 + rows] = _mm(part, b_mm)
            db += _mm(part.t(), a_mm[row0 : row0 + rows])
        grads_aa = daa if ctx.needs_input_grad[2] else None
        grads_bb = dbb if ctx.needs_input_grad[3] else None
        return da.to(a.dtype), db.to(b.dtype), grads_aa, grads_bb, *([None] * 8)
