"""Fused harmonic loss for the elementwise ("L1-type") distances, which no GEMM can compute:
    MANHATTAN   sum_k |u_k| * scale                  (u = x - w; hamming_soft: x, w sigmoid bits, scale 1/D)
    MINKOWSKI   (sum_k |u_k|^p)^(1/p)                (inputs pre-scaled by one constant so |u|^p cannot overflow)
    CHEBYSHEV   max_k |u_k|                          (gradient shared among tied maxima, as torch.amax)
    SMOOTH      log(sum_k exp(alpha |u_k|)) / alpha  (running max, one exp per element)
    CANBERRA    sum_k |u_k| / (|x_k| + |w_k|)        (0/0 terms count 0)
    BRAYCURTIS  sum_k |u_k| / sum_k |x_k + w_k|      (two accumulators per pair)
    BRAYABS     sum_k |u_k| / (aa_i + bb_j)          (aa = sum |x|, bb = sum |w| from torch, so autograd owns them)

Each program owns a tile of rows x centres and walks over the D features one at a time, reading x and W transposed
(D-major) so every step loads two contiguous vectors and updates the whole tile on CUDA cores: nothing of size
N x V x D or N x V is ever stored. The forward folds each finished tile into the running log-sum-exp; the backward
recomputes the tile's per-pair statistics, turns dLoss/dd into per-pair coefficients, then walks over D again and
adds each feature's row and column sums to dx and dW with atomics (fp32).
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

MANHATTAN, MINKOWSKI, CHEBYSHEV, SMOOTH, CANBERRA, BRAYCURTIS, BRAYABS = range(7)
KINDS = {
    "manhattan": MANHATTAN,
    "minkowski": MINKOWSKI,
    "chebyshev": CHEBYSHEV,
    "smooth": SMOOTH,
    "canberra": CANBERRA,
    "braycurtis": BRAYCURTIS,
    "brayabs": BRAYABS,
}


@triton.jit
def _sign(v):
    return tl.where(v > 0.0, 1.0, tl.where(v < 0.0, -1.0, 0.0))


@triton.jit
def _pow(v, p, P_INT: tl.constexpr):
    """v ** p for v >= 0; P_INT = 1, 2, 3 use multiplications, 0 means a general p (exp2/log2, 0 ** p = 0)."""
    if P_INT == 1:
        return v
    elif P_INT == 2:
        return v * v
    elif P_INT == 3:
        return v * v * v
    else:
        return tl.where(v > 0.0, tl.exp2(p * tl.log2(tl.maximum(v, 1e-30))), 0.0)


@triton.jit
def _pair_stats(
    aT_ptr,
    bT_ptr,
    rows,
    cols,
    row_ok,
    col_ok,
    N,
    V,
    D,
    p,
    alpha,
    KIND: tl.constexpr,
    P_INT: tl.constexpr,
    BN: tl.constexpr,
    BV: tl.constexpr,
    BK: tl.constexpr,
):
    """Per-pair accumulators over all D features: (A, B); their meaning depends on KIND (see _finish)."""
    acc_a = tl.zeros((BN, BV), tl.float32)
    acc_b = tl.zeros((BN, BV), tl.float32)
    if KIND == 3:
        acc_a = tl.full((BN, BV), float("-inf"), tl.float32)
    for k0 in range(0, D, BK):
        for kk in tl.static_range(BK):
            k = k0 + kk
            xk = tl.load(aT_ptr + k * N + rows, mask=row_ok, other=0.0).to(tl.float32)
            wk = tl.load(bT_ptr + k * V + cols, mask=col_ok, other=0.0).to(tl.float32)
            u = tl.abs(xk[:, None] - wk[None, :])
            if KIND == 0 or KIND == 6:
                acc_a += u
            elif KIND == 1:
                acc_a += _pow(u, p, P_INT)
            elif KIND == 2:
                # running max and number of features attaining it
                acc_b = tl.where(u > acc_a, 1.0, tl.where(u == acc_a, acc_b + 1.0, acc_b))
                acc_a = tl.maximum(acc_a, u)
            elif KIND == 3:
                # running max of alpha|u| (acc_a) and sum of exp(alpha|u| - max) (acc_b), one exp per element
                t = alpha * u
                e = tl.exp(-tl.abs(t - acc_a))
                acc_b = tl.where(t > acc_a, acc_b * e + 1.0, acc_b + e)
                acc_a = tl.maximum(acc_a, t)
            elif KIND == 4:
                den = tl.abs(xk)[:, None] + tl.abs(wk)[None, :]
                acc_a += u / tl.where(den > 0.0, den, 1.0)  # den = 0 only where u = 0
            else:
                acc_a += u
                acc_b += tl.abs(xk[:, None] + wk[None, :])
    return acc_a, acc_b


@triton.jit
def _finish(acc_a, acc_b, aa, bb, p, alpha, scale, KIND: tl.constexpr):
    """Distance tile from the accumulators."""
    if KIND == 0:
        d = acc_a * scale
    elif KIND == 1:
        d = tl.where(acc_a > 0.0, tl.exp2(tl.log2(tl.maximum(acc_a, 1e-30)) / p), 0.0) * scale
    elif KIND == 2:
        d = acc_a
    elif KIND == 3:
        d = (acc_a + tl.log(acc_b)) / alpha
    elif KIND == 4:
        d = acc_a
    elif KIND == 5:
        d = acc_a / tl.where(acc_b > 0.0, acc_b, 1e-30)  # x = -w: divide by TINY
    else:
        den = aa[:, None] + bb[None, :]
        d = acc_a / tl.where(den > 0.0, den, 1.0)  # den = 0 implies acc_a = 0
    return d


@triton.jit
def _forward_kernel(
    aT_ptr,
    bT_ptr,
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
    p,
    alpha,
    scale,
    KIND: tl.constexpr,
    P_INT: tl.constexpr,
    BN: tl.constexpr,
    BV: tl.constexpr,
    BK: tl.constexpr,
):
    split = tl.program_id(1)
    rows = tl.program_id(0) * BN + tl.arange(0, BN)
    row_ok = rows < N
    y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
    aa = tl.load(aa_ptr + rows, mask=row_ok, other=0.0)
    m = tl.full((BN,), float("-inf"), tl.float32)
    s = tl.zeros((BN,), tl.float32)
    zsum = tl.zeros((BN,), tl.float32)
    zt = tl.zeros((BN,), tl.float32)
    first = split * tiles_per_split
    last = tl.minimum(first + tiles_per_split, tl.cdiv(V, BV))
    for t in range(first, last):
        cols = t * BV + tl.arange(0, BV)
        col_ok = cols < V
        bb = tl.load(bb_ptr + cols, mask=col_ok, other=0.0)
        acc_a, acc_b = _pair_stats(
            aT_ptr, bT_ptr, rows, cols, row_ok, col_ok, N, V, D, p, alpha, KIND, P_INT, BN, BV, BK
        )
        d = _finish(acc_a, acc_b, aa, bb, p, alpha, scale, KIND)
        m, s, zsum, zt = lse_stats_update(d, cols, col_ok, y, m, s, zsum, zt, n_exp, eps)
    out = split * N + rows
    tl.store(m_ptr + out, m, mask=row_ok)
    tl.store(s_ptr + out, s, mask=row_ok)
    tl.store(zsum_ptr + out, zsum, mask=row_ok)
    tl.store(zt_ptr + out, zt, mask=row_ok)


@triton.jit
def _backward_kernel(
    aT_ptr,
    bT_ptr,
    aa_ptr,
    bb_ptr,
    y_ptr,
    lse_ptr,
    g_ptr,
    daT_ptr,
    dbT_ptr,
    daa_ptr,
    dbb_ptr,
    N,
    V,
    D,
    n_exp,
    eps,
    p,
    alpha,
    scale,
    smoothing,
    KIND: tl.constexpr,
    P_INT: tl.constexpr,
    PM1_INT: tl.constexpr,
    BN: tl.constexpr,
    BV: tl.constexpr,
    BK: tl.constexpr,
):
    rows = tl.program_id(0) * BN + tl.arange(0, BN)
    row_ok = rows < N
    cols = tl.program_id(1) * BV + tl.arange(0, BV)
    col_ok = cols < V
    y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)
    aa = tl.load(aa_ptr + rows, mask=row_ok, other=0.0)
    bb = tl.load(bb_ptr + cols, mask=col_ok, other=0.0)
    acc_a, acc_b = _pair_stats(aT_ptr, bT_ptr, rows, cols, row_ok, col_ok, N, V, D, p, alpha, KIND, P_INT, BN, BV, BK)
    d = _finish(acc_a, acc_b, aa, bb, p, alpha, scale, KIND)
    gd = grad_wrt_distance(d, cols, col_ok, y, lse, g, n_exp, eps, smoothing, V)
    # Per-pair coefficients: dd/dx_k = c1 * e1(x_k, w_k) + c2 * e2(x_k, w_k) (and the matching dd/dw_k).
    c2 = tl.zeros((BN, BV), tl.float32)
    if KIND == 0:
        c1 = gd * scale
    elif KIND == 1:
        dp = tl.where(d > 0.0, _pow(d / scale, p - 1.0, PM1_INT), 1.0)
        c1 = tl.where(d > 0.0, gd * scale / dp, 0.0)
    elif KIND == 2:
        c1 = gd / tl.maximum(acc_b, 1.0)
    elif KIND == 3:
        c1 = gd
    elif KIND == 4:
        c1 = gd
    elif KIND == 5:
        den = tl.where(acc_b > 0.0, acc_b, 1e-30)
        c1 = gd / den
        c2 = tl.where(acc_b > 0.0, -gd * acc_a / (den * den), 0.0)
    else:
        den_raw = aa[:, None] + bb[None, :]
        den = tl.where(den_raw > 0.0, den_raw, 1.0)
        c1 = gd / den
        c2 = tl.where(den_raw > 0.0, -gd * acc_a / (den * den), 0.0)
        tl.atomic_add(daa_ptr + rows, tl.sum(c2, axis=1), mask=row_ok)
        tl.atomic_add(dbb_ptr + cols, tl.sum(c2, axis=0), mask=col_ok)
    for k0 in range(0, D, BK):
        for kk in tl.static_range(BK):
            k = k0 + kk
            xk = tl.load(aT_ptr + k * N + rows, mask=row_ok, other=0.0).to(tl.float32)
            wk = tl.load(bT_ptr + k * V + cols, mask=col_ok, other=0.0).to(tl.float32)
            u = xk[:, None] - wk[None, :]
            if KIND == 4:
                den = tl.abs(xk)[:, None] + tl.abs(wk)[None, :]
                r = 1.0 / tl.where(den > 0.0, den, 1.0)
                su = _sign(u) * r
                t = tl.abs(u) * r * r
                gx = tl.sum(c1 * (su - t * _sign(xk)[:, None]), axis=1)
                gw = tl.sum(c1 * (-su - t * _sign(wk)[None, :]), axis=0)
            elif KIND == 5:
                e2 = c2 * _sign(xk[:, None] + wk[None, :])
                e1 = c1 * _sign(u)
                gx = tl.sum(e1 + e2, axis=1)
                gw = tl.sum(e2 - e1, axis=0)
            else:
                if KIND == 0 or KIND == 6:
                    e1 = c1 * _sign(u)
                elif KIND == 1:
                    e1 = c1 * _sign(u) * _pow(tl.abs(u), p - 1.0, PM1_INT)
                elif KIND == 2:
                    e1 = tl.where(tl.abs(u) == d, c1 * _sign(u), 0.0)
                else:
                    e1 = c1 * _sign(u) * tl.exp(alpha * tl.abs(u) - alpha * d)
                gx = tl.sum(e1, axis=1)
                gw = -tl.sum(e1, axis=0)
            tl.atomic_add(daT_ptr + k * N + rows, gx, mask=row_ok)
            tl.atomic_add(dbT_ptr + k * V + cols, gw, mask=col_ok)


def _blocks():
    """(BN rows, BV centres, num_warps) of one tile."""
    return (16, 16, 4) if INTERPRET else (64, 64, 4)


def _feature_step(dim: int) -> int:
    """Features unrolled per loop step: the largest of 8, 4, 2, 1 dividing D (so no step reads past D)."""
    return next(step for step in (8, 4, 2, 1) if dim % step == 0)


def _int_power(p: float) -> int:
    """1, 2, 3 when p is that integer (multiplications in the kernel), else 0 (exp2/log2)."""
    return int(p) if p in (1.0, 2.0, 3.0) else 0


class L1HeadLoss(torch.autograd.Function):
    """Harmonic loss of an elementwise distance between a (N x D) and b (V x D): see the module docstring.

    aa, bb are per-row terms some distances need (bray-curtis-abs: sum |x|, sum |w|), zeros otherwise.
    """

    @staticmethod
    def forward(ctx, a, b, aa, bb, y, kind, n_exp, eps, p, alpha, scale, smoothing, ignore_index, reduction):
        n, dim = a.shape
        classes = b.shape[0]
        aT, bT = a.t().contiguous(), b.t().contiguous()
        aa, bb = aa.float().contiguous(), bb.float().contiguous()
        bn, bv, warps = _blocks()
        row_blocks, col_tiles = triton.cdiv(n, bn), triton.cdiv(classes, bv)
        splits = num_splits(row_blocks, col_tiles, a.device)
        tiles_per_split = triton.cdiv(col_tiles, splits)
        splits = triton.cdiv(col_tiles, tiles_per_split)
        m, s, zsum, zt = new_partials(splits, n, a.device)
        _forward_kernel[(row_blocks, splits)](
            aT,
            bT,
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
            p,
            alpha,
            scale,
            KIND=kind,
            P_INT=_int_power(p),
            BN=bn,
            BV=bv,
            BK=_feature_step(dim),
            num_warps=warps,
        )
        loss, lse, valid, count = combine_partials(m, s, zsum, zt, y, classes, smoothing, ignore_index, reduction)
        ctx.save_for_backward(aT, bT, aa, bb, y, lse, valid, count)
        ctx.args = (kind, n_exp, eps, p, alpha, scale, smoothing, reduction, a.dtype, b.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        aT, bT, aa, bb, y, lse, valid, count = ctx.saved_tensors
        kind, n_exp, eps, p, alpha, scale, smoothing, reduction, a_dtype, b_dtype = ctx.args
        dim, n = aT.shape
        classes = bT.shape[1]
        g = row_weights(grad_out, valid, count, reduction)
        bn, bv, warps = _blocks()
        daT = torch.zeros(dim, n, device=aT.device, dtype=torch.float32)
        dbT = torch.zeros(dim, classes, device=aT.device, dtype=torch.float32)
        daa = torch.zeros(n, device=aT.device, dtype=torch.float32)
        dbb = torch.zeros(classes, device=aT.device, dtype=torch.float32)
        _backward_kernel[(triton.cdiv(n, bn), triton.cdiv(classes, bv))](
            aT,
            bT,
            aa,
            bb,
            y,
            lse,
            g,
            daT,
            dbT,
            daa,
            dbb,
            n,
            classes,
            dim,
            n_exp,
            eps,
            p,
            alpha,
            scale,
            smoothing,
            KIND=kind,
            P_INT=_int_power(p),
            PM1_INT=_int_power(p - 1.0),
            BN=bn,
            BV=bv,
            BK=_feature_step(dim),
            num_warps=warps,
        )
        grads_aa = daa if ctx.needs_input_grad[2] else None
        grads_bb = dbb if ctx.needs_input_grad[3] else None
        return daT.t().to(a_dtype), dbT.t().to(b_dtype), grads_aa, grads_bb, *([None] * 10)
