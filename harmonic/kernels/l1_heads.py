"""Fused harmonic loss for the elementwise ("L1-type") distances, which no GEMM can compute:
    MANHATTAN   sum_k |u_k| * scale                  (u = x - w; hamming_soft: x, w sigmoid bits, scale 1/D)
    MINKOWSKI   (sum_k |u_k|^p)^(1/p)                (inputs pre-scaled by one constant so |u|^p cannot overflow)
    CHEBYSHEV   max_k |u_k|                          (gradient shared among tied maxima, as torch.amax)
    SMOOTH      log(sum_k exp(alpha |u_k|)) / alpha  (running max, one exp per element)
    CANBERRA    sum_k |u_k| / (|x_k| + |w_k|)        (0/0 terms count 0)
    BRAYCURTIS  sum_k |u_k| / sum_k |x_k + w_k|      (two accumulators per pair)
    BRAYABS     sum_k |u_k| / (aa_i + bb_j)          (aa = sum |x|, bb = sum |w|, detached: see denominator_grads)

Each program owns a tile of rows x centres and walks over the D features one at a time, reading x and W transposed
(D-major) so every step loads two contiguous vectors and updates the whole tile on CUDA cores: nothing of size
N x V x D or N x V is ever stored. The forward folds each finished tile into the running log-sum-exp; the backward
recomputes the tile's per-pair statistics, turns dLoss/dd into per-pair coefficients, then walks over D again and
adds each feature's row and column sums to dx and dW with atomics (fp32).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from harmonic.kernels._loss import (
    INTERPRET,
    finish_rows,
    grad_wrt_distance,
    load_tile_terms,
    lse_stats_update,
    new_partials,
    num_splits,
    reduce_rows,
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
def _times_sign(c, v):
    """c * sign(v), exactly (0 where v == 0: torch's gradient of |v| there): c's sign bit xor v's, then one select,
    instead of two compares, two selects and a multiply per element."""
    flipped = c.to(tl.uint32, bitcast=True) ^ (v.to(tl.uint32, bitcast=True) & 0x80000000)
    return tl.where(v == 0.0, 0.0, flipped.to(tl.float32, bitcast=True))


# Inline PTX only when compiling for the GPU: the interpreter (the CPU tests) has no inline assembly.
_PTX = tl.constexpr(not INTERPRET)
FLT_MIN = tl.constexpr(1.1754943508222875e-38)  # smallest normal fp32
LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _rcp(v):
    """1 / v for FLT_MIN <= v <= 2^126: one MUFU.RCP (rcp.approx.ftz, 1 ulp). Triton's a / b is div.full.f32, ~7
    instructions here (range tests and scalings around the same MUFU.RCP), which the callers do not need: they
    clamp v to >= FLT_MIN, and v > 2^126 would take |x| + |w| above 8e37."""
    if _PTX:
        return tl.inline_asm_elementwise(
            "rcp.approx.ftz.f32 $0, $1;", "=f,f", [v], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return 1.0 / v


@triton.jit
def _exp2(v):
    """2^v for v <= 0 (results below FLT_MIN flush to 0): one MUFU.EX2, without tl.exp2's subnormal scaling."""
    if _PTX:
        return tl.inline_asm_elementwise(
            "ex2.approx.ftz.f32 $0, $1;", "=f,f", [v], dtype=tl.float32, is_pure=True, pack=1
        )
    else:
        return tl.exp2(v)


@triton.jit
def _sign(v):
    """sign(v) as -1.0, 0.0 or 1.0 (computed once per block, outside the hot loops)."""
    return tl.where(v > 0.0, 1.0, tl.where(v < 0.0, -1.0, 0.0))


@triton.jit
def _grid_rows(R: tl.constexpr, T: tl.constexpr):
    """(R, 1, T, 1) index a * T + c of a tile's first axis: see _pair_stats."""
    return tl.arange(0, R)[:, None, None, None] * T + tl.arange(0, T)[None, None, :, None]


@triton.jit
def _grid_cols(R: tl.constexpr, T: tl.constexpr):
    """(1, R, 1, T) index b * T + e of a tile's second axis: see _pair_stats."""
    return tl.arange(0, R)[None, :, None, None] * T + tl.arange(0, T)[None, None, None, :]


@triton.jit
def _pow(v, p, P_INT: tl.constexpr):
    """v ** p for v >= 0, in the cheap form _int_power chose (0: general p through exp2/log2, 0 ** p = 0)."""
    if P_INT == 1:
        return v
    elif P_INT == 2:
        return v * v
    elif P_INT == 3:
        return v * v * v
    elif P_INT == 5:  # p = 0.5
        return tl.sqrt(v)
    elif P_INT == 15:  # p = 1.5
        return v * tl.sqrt(v)
    else:
        return tl.where(v > 0.0, tl.exp2(p * tl.log2(tl.maximum(v, 1e-30))), 0.0)


@triton.jit
def _pair_stats(
    aT_ptr,
    bT_ptr,
    row0,
    col0,
    stride_a,
    stride_b,
    D,
    p,
    alpha,
    KIND: tl.constexpr,
    P_INT: tl.constexpr,
    BN: tl.constexpr,
    BV: tl.constexpr,
    BK: tl.constexpr,
    TR: tl.constexpr,
    TC: tl.constexpr,
):
    """Per-pair accumulators over all D features for rows row0 + arange(BN) x centres col0 + arange(BV): (A, B);
    their meaning depends on KIND (see _finish).

    The tile is held as (BN // TR, BV // TC, TR, TC) with row a * TR + c and centre b * TC + e: Triton's default
    layout spreads the TR x TC threads over the last two axes, so each thread keeps a (BN // TR) x (BV // TC) block
    and loads BN // TR + BV // TC values per feature instead of a whole column of BN (which made the loop bound
    by loads, not arithmetic). The layout only changes which thread owns a pair: every pair's sum runs over k in
    the same order, so the results are unchanged."""
    RR: tl.constexpr = BN // TR
    CR: tl.constexpr = BV // TC
    # aT, bT are zero-padded to whole tiles (stride_a, stride_b columns): no masks in the loop, and the padding
    # pairs see x = 0 / w = 0 exactly as masked loads did (the callers drop them). Each thread's RR rows sit at fixed
    # offsets from one address, so one pointer per feature serves them all.
    rows = row0 + _grid_rows(RR, TR)
    cols = col0 + _grid_cols(CR, TC)
    acc_a = tl.zeros((RR, CR, TR, TC), tl.float32)
    acc_b = tl.zeros((RR, CR, TR, TC), tl.float32)
    if KIND == 3:
        acc_a = tl.full((RR, CR, TR, TC), float("-inf"), tl.float32)
    neg_alpha2 = -alpha * LOG2E
    for k0 in range(0, D, BK):
        for kk in tl.static_range(BK):
            k = k0 + kk
            xk = tl.load(aT_ptr + k * stride_a + rows).to(tl.float32)
            wk = tl.load(bT_ptr + k * stride_b + cols).to(tl.float32)
            u = tl.abs(xk - wk)
            if KIND == 0 or KIND == 6:
                acc_a += u
            elif KIND == 1:
                acc_a += _pow(u, p, P_INT)
            elif KIND == 2:
                # running max and number of features attaining it
                acc_b = tl.where(u > acc_a, 1.0, tl.where(u == acc_a, acc_b + 1.0, acc_b))
                acc_a = tl.maximum(acc_a, u)
            elif KIND == 3:
                # running max of |u| (acc_a) and sum of exp(alpha (|u| - max)) (acc_b), one exp2 per element: the
                # smaller of |u| and the max is the one rescaled, by 2^(-alpha / ln 2 * ||u| - max|)
                t = u - acc_a
                e = _exp2(tl.abs(t) * neg_alpha2)
                acc_b = tl.where(t > 0.0, acc_b * e + 1.0, acc_b + e)
                acc_a = tl.maximum(acc_a, u)
            elif KIND == 4:
                # den = 0 only where u = 0: clamped to FLT_MIN the term is 0 * 2^126 = 0 (so is any u <= den below
                # FLT_MIN: subnormal pairs count ~0)
                den = tl.maximum(tl.abs(xk) + tl.abs(wk), FLT_MIN)
                acc_a += u * _rcp(den)
            else:
                acc_a += u
                acc_b += tl.abs(xk + wk)
    acc_a = tl.reshape(tl.permute(acc_a, (0, 2, 1, 3)), (BN, BV))
    acc_b = tl.reshape(tl.permute(acc_b, (0, 2, 1, 3)), (BN, BV))
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
        d = acc_a + tl.log(acc_b) / alpha
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
    stride_a,
    stride_b,
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
    TR: tl.constexpr,
    TC: tl.constexpr,
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
            aT_ptr,
            bT_ptr,
            tl.program_id(0) * BN,
            t * BV,
            stride_a,
            stride_b,
            D,
            p,
            alpha,
            KIND,
            P_INT,
            BN,
            BV,
            BK,
            TR,
            TC,
        )
        d = _finish(acc_a, acc_b, aa, bb, p, alpha, scale, KIND)
        m, s, zsum, zt = lse_stats_update(d, cols, col_ok, y, m, s, zsum, zt, n_exp, eps)
    out = split * N + rows
    tl.store(m_ptr + out, m, mask=row_ok)
    tl.store(s_ptr + out, s, mask=row_ok)
    tl.store(zsum_ptr + out, zsum, mask=row_ok)
    tl.store(zt_ptr + out, zt, mask=row_ok)


@triton.jit
def _pair_coefficients(
    gd,
    d,
    acc_a,
    acc_b,
    aa,
    bb,
    rows,
    cols,
    row_ok,
    col_ok,
    daa_ptr,
    dbb_ptr,
    p,
    alpha,
    scale,
    KIND: tl.constexpr,
    PM1_INT: tl.constexpr,
    BN: tl.constexpr,
    BV: tl.constexpr,
):
    """Per-pair (c1, aux) with dLoss/dx_k = sum_j c1 * e(x_k, w_k; aux) (see _elem_grad); bray-curtis-abs also adds
    its denominator's gradient to daa, dbb here."""
    aux = tl.zeros((BN, BV), tl.float32)
    if KIND == 0:
        c1 = gd * scale
    elif KIND == 1:
        dp = tl.where(d > 0.0, _pow(d / scale, p - 1.0, PM1_INT), 1.0)
        c1 = tl.where(d > 0.0, gd * scale / dp, 0.0)
    elif KIND == 2:
        c1 = gd / tl.maximum(acc_b, 1.0)
        aux = d
    elif KIND == 3:
        c1 = gd
        aux = d * (alpha * LOG2E)
    elif KIND == 4:
        c1 = gd
    elif KIND == 5:
        den = tl.where(acc_b > 0.0, acc_b, 1e-30)
        c1 = gd / den
        aux = tl.where(acc_b > 0.0, -gd * acc_a / (den * den), 0.0)
    else:
        den_raw = aa[:, None] + bb[None, :]
        den = tl.where(den_raw > 0.0, den_raw, 1.0)
        c1 = gd / den
        c2 = tl.where(den_raw > 0.0, -gd * acc_a / (den * den), 0.0)
        tl.atomic_add(daa_ptr + rows, tl.sum(c2, axis=1), mask=row_ok)
        tl.atomic_add(dbb_ptr + cols, tl.sum(c2, axis=0), mask=col_ok)
    return c1, aux


@triton.jit
def _tile_coefficients(
    aT_ptr, bT_ptr, aa_ptr, bb_ptr, y_ptr, lse_ptr, g_ptr, daa_ptr, dbb_ptr, row0, col0, N, V,
    stride_a, stride_b, D, n_exp, eps, p, alpha, scale, smoothing,
    KIND: tl.constexpr, P_INT: tl.constexpr, PM1_INT: tl.constexpr, BN: tl.constexpr, BV: tl.constexpr,
    BK: tl.constexpr, TR: tl.constexpr, TC: tl.constexpr,
):  # fmt: skip
    """The start of every backward tile, shared by both variants: recompute the tile's distances d and turn
    dLoss/dd into the per-pair coefficients (c1, aux) of _pair_coefficients."""
    rows = row0 + tl.arange(0, BN)
    row_ok = rows < N
    cols = col0 + tl.arange(0, BV)
    col_ok = cols < V
    y, lse, g, aa, bb = load_tile_terms(y_ptr, lse_ptr, g_ptr, aa_ptr, bb_ptr, rows, row_ok, cols, col_ok)
    acc_a, acc_b = _pair_stats(
        aT_ptr, bT_ptr, row0, col0, stride_a, stride_b, D, p, alpha, KIND, P_INT, BN, BV, BK, TR, TC
    )  # fmt: skip
    d = _finish(acc_a, acc_b, aa, bb, p, alpha, scale, KIND)
    gd = grad_wrt_distance(d, eps, cols, col_ok[None, :], y, lse, g, n_exp, smoothing, V)
    c1, aux = _pair_coefficients(
        gd, d, acc_a, acc_b, aa, bb, rows, cols, row_ok, col_ok, daa_ptr, dbb_ptr, p, alpha, scale, KIND, PM1_INT,
        BN, BV,
    )  # fmt: skip
    return d, c1, aux


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
    stride_a,
    stride_b,
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
    TR: tl.constexpr,
    TC: tl.constexpr,
):
    rows = tl.program_id(0) * BN + tl.arange(0, BN)
    row_ok = rows < N
    cols = tl.program_id(1) * BV + tl.arange(0, BV)
    col_ok = cols < V
    d, c1, aux = _tile_coefficients(
        aT_ptr, bT_ptr, aa_ptr, bb_ptr, y_ptr, lse_ptr, g_ptr, daa_ptr, dbb_ptr, tl.program_id(0) * BN,
        tl.program_id(1) * BV, N, V, stride_a, stride_b, D, n_exp, eps, p, alpha, scale, smoothing,
        KIND, P_INT, PM1_INT, BN, BV, BK, TR, TC,
    )  # fmt: skip
    c2 = aux
    for k0 in range(0, D, BK):
        for kk in tl.static_range(BK):
            k = k0 + kk
            xk = tl.load(aT_ptr + k * stride_a + rows).to(tl.float32)  # padded: no mask
            wk = tl.load(bT_ptr + k * stride_b + cols).to(tl.float32)
            u = xk[:, None] - wk[None, :]
            if KIND == 4:
                # see _elem_grad: d/dx = sign(u) (|w| + w sign(x)) / den^2, d/dw = -sign(u) (|x| + x sign(w)) / den^2
                r = _rcp(tl.maximum(tl.abs(xk)[:, None] + tl.abs(wk)[None, :], FLT_MIN))
                cr = c1 * r * r
                nx = tl.abs(wk)[None, :] + wk[None, :] * _sign(xk)[:, None]
                nw = tl.abs(xk)[:, None] + xk[:, None] * _sign(wk)[None, :]
                gx = tl.sum(_times_sign(cr * nx, u), axis=1)
                gw = -tl.sum(_times_sign(cr * nw, u), axis=0)
            elif KIND == 5:
                e2 = _times_sign(c2, xk[:, None] + wk[None, :])
                e1 = _times_sign(c1, u)
                gx = tl.sum(e1 + e2, axis=1)
                gw = tl.sum(e2 - e1, axis=0)
            else:
                if KIND == 0 or KIND == 6:
                    e1 = _times_sign(c1, u)
                elif KIND == 1:
                    e1 = _times_sign(c1, u) * _pow(tl.abs(u), p - 1.0, PM1_INT)
                elif KIND == 2:
                    e1 = tl.where(tl.abs(u) == d, _times_sign(c1, u), 0.0)
                else:
                    e1 = _times_sign(c1, u) * _exp2(tl.abs(u) * (alpha * LOG2E) - c2)
                gx = tl.sum(e1, axis=1)
                gw = -tl.sum(e1, axis=0)
            tl.atomic_add(daT_ptr + k * N + rows, gx, mask=row_ok)
            tl.atomic_add(dbT_ptr + k * V + cols, gw, mask=col_ok)


@triton.jit
def _elem_grad(xv, wv, c1, aux, own_sign, p, alpha, KIND: tl.constexpr, PM1_INT: tl.constexpr, FOR_X: tl.constexpr):
    """c1 * dd/dx (FOR_X) or c1 * dd/dw for broadcast element pairs (x_k, w_k); aux is the second per-pair value:
    chebyshev d, smooth alpha * d / ln 2, bray-curtis c2 (the coefficient of the denominator). own_sign (canberra
    only): sign of the operand the caller holds across its loop, sign(x) for dx, sign(w) for dW."""
    if KIND == 4:
        # d/dx |u| / den = sign(u) / den - |u| sign(x) / den^2 = sign(u) (den - u sign(x)) / den^2, and
        # den - u sign(x) = |w| + w sign(x) (also at x = 0); likewise d/dw = -sign(u) (|x| + x sign(w)) / den^2.
        # Where u = 0 (den = 0 included) _times_sign gives torch's 0 whatever r is.
        r = _rcp(tl.maximum(tl.abs(xv) + tl.abs(wv), FLT_MIN))
        if FOR_X:
            out = _times_sign(c1 * (tl.abs(wv) + wv * own_sign) * r * r, xv - wv)
        else:
            out = _times_sign(c1 * (tl.abs(xv) + xv * own_sign) * r * r, wv - xv)
    elif KIND == 5:
        u = xv - wv
        e2 = _times_sign(aux, xv + wv)
        if FOR_X:
            out = _times_sign(c1, u) + e2
        else:
            out = e2 - _times_sign(c1, u)
    else:
        u = xv - wv
        if KIND == 0 or KIND == 6:
            e1 = _times_sign(c1, u)
        elif KIND == 1:
            e1 = _times_sign(c1, u) * _pow(tl.abs(u), p - 1.0, PM1_INT)
        elif KIND == 2:
            e1 = tl.where(tl.abs(u) == aux, _times_sign(c1, u), 0.0)
        else:
            e1 = _times_sign(c1, u) * _exp2(tl.abs(u) * (alpha * LOG2E) - aux)
        if FOR_X:
            out = e1
        else:
            out = -e1
    return out


@triton.jit
def _backward_outer_kernel(
    aT_ptr,
    bT_ptr,
    a_ptr,
    b_ptr,
    aa_ptr,
    bb_ptr,
    y_ptr,
    lse_ptr,
    g_ptr,
    da_ptr,
    db_ptr,
    daa_ptr,
    dbb_ptr,
    scratch_ptr,
    N,
    V,
    D,
    stride_a,
    stride_b,
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
    TR: tl.constexpr,
    TC: tl.constexpr,
    BKD: tl.constexpr,
    XR: tl.constexpr,
    XK: tl.constexpr,
    WR: tl.constexpr,
    WK: tl.constexpr,
    EVEN_K: tl.constexpr,
):
    """Backward without cross-thread reductions: a persistent program takes tiles in turn; for each it recomputes
    the per-pair coefficients, parks them in its own scratch slot (row- and column-major), then accumulates dx
    (rows x BKD features) over the tile's centres and dW (centres x BKD) over its rows as outer-product updates,
    adding each block to the gradients once with atomics."""
    pid = tl.program_id(0)
    row_blocks = tl.cdiv(N, BN)
    col_tiles = tl.cdiv(V, BV)
    ii = tl.arange(0, BN)
    jj = tl.arange(0, BV)
    slot = scratch_ptr + pid * (4 * BN * BV)  # c1 by rows, c1 by columns, aux by rows, aux by columns
    for tile in range(pid, row_blocks * col_tiles, tl.num_programs(0)):
        row0 = (tile // col_tiles) * BN
        col0 = (tile % col_tiles) * BV
        _, c1, aux = _tile_coefficients(
            aT_ptr, bT_ptr, aa_ptr, bb_ptr, y_ptr, lse_ptr, g_ptr, daa_ptr, dbb_ptr, row0, col0, N, V,
            stride_a, stride_b, D, n_exp, eps, p, alpha, scale, smoothing, KIND, P_INT, PM1_INT, BN, BV, BK, TR, TC,
        )  # fmt: skip
        tl.debug_barrier()  # the previous tile's readers are done with the slot
        tl.store(slot + ii[:, None] * BV + jj[None, :], c1)
        tl.store(slot + BN * BV + jj[None, :] * BN + ii[:, None], c1)
        tl.store(slot + 2 * BN * BV + ii[:, None] * BV + jj[None, :], aux)
        tl.store(slot + 3 * BN * BV + jj[None, :] * BN + ii[:, None], aux)
        tl.debug_barrier()  # every thread sees the whole slot
        # dx (rows x BKD features) and dW (centres x BKD) blocks in the 4-d thread layout of _pair_stats: per centre
        # (row) a thread loads a few coefficients and features, not a whole column. Centres / rows past V / N have
        # c1 = 0 and are skipped, so their loads need no mask; so do features when BKD divides D (EVEN_K).
        ri = _grid_rows(BN // XR, XR)
        kx = _grid_cols(BKD // XK, XK)
        cj = _grid_rows(BV // WR, WR)
        kw = _grid_cols(BKD // WK, WK)
        xrow_ok = row0 + ri < N
        wrow_ok = col0 + cj < V
        for k0 in range(0, D, BKD):
            kxs = k0 + kx
            kws = k0 + kw
            if EVEN_K:
                kxl = kxs
                kwl = kws
            else:  # past D: load feature D - 1, drop it at the atomic
                kxl = tl.minimum(kxs, D - 1)
                kwl = tl.minimum(kws, D - 1)
            xb = tl.load(a_ptr + (row0 + ri) * D + kxl, mask=xrow_ok, other=0.0).to(tl.float32)
            xs = _sign(xb) if KIND == 4 else xb
            gx = tl.zeros((BN // XR, BKD // XK, XR, XK), tl.float32)
            for j in range(0, tl.minimum(BV, V - col0)):
                c1j = tl.load(slot + BN * BV + j * BN + ri)
                auxj = tl.load(slot + 3 * BN * BV + j * BN + ri)
                wr = tl.load(b_ptr + (col0 + j) * D + kxl).to(tl.float32)
                gx += _elem_grad(xb, wr, c1j, auxj, xs, p, alpha, KIND, PM1_INT, True)
            tl.atomic_add(da_ptr + (row0 + ri) * D + kxs, gx, mask=xrow_ok & (kxs < D))
            wb = tl.load(b_ptr + (col0 + cj) * D + kwl, mask=wrow_ok, other=0.0).to(tl.float32)
            ws = _sign(wb) if KIND == 4 else wb
            gw = tl.zeros((BV // WR, BKD // WK, WR, WK), tl.float32)
            for i in range(0, tl.minimum(BN, N - row0)):
                c1i = tl.load(slot + i * BV + cj)
                auxi = tl.load(slot + 2 * BN * BV + i * BV + cj)
                xr = tl.load(a_ptr + (row0 + i) * D + kwl).to(tl.float32)
                gw += _elem_grad(xr, wb, c1i, auxi, ws, p, alpha, KIND, PM1_INT, False)
            tl.atomic_add(db_ptr + (col0 + cj) * D + kws, gw, mask=wrow_ok & (kws < D))


# GPU tile (BN rows, BV centres, num_warps), features per outer-product block, programs per SM: the fastest of the
# configurations benchmarks/heads_benchmark.py tunes over on an H100 (docs/performance.md).
BLOCK = (64, 64, 4)
FEATURE_BLOCK = 128


def _blocks():
    """(BN rows, BV centres, num_warps) of one tile."""
    return (16, 16, 4) if INTERPRET else BLOCK


# Backward variant: "outer" (scratch + outer-product updates, no cross-thread reductions) or "reduce" (per-feature
# row/column sums of the tile). Both are tested; the benchmark measured both (docs/performance.md).
BACKWARD = os.environ.get("HARMONIC_L1_BACKWARD", "outer")
PROGRAMS_PER_SM = 4


def _persistent_programs(tiles: int, device: torch.device) -> int:
    if INTERPRET or device.type != "cuda":
        return min(tiles, 3)  # several tiles per program: exercises the persistent loop on the CPU
    return min(tiles, PROGRAMS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count)


def _thread_grid(rows: int, cols: int, warps: int) -> tuple[int, int]:
    """(TR, TC): how a rows x cols tile spreads its 32 * warps threads over the two axes (see _pair_stats). Each
    thread then owns a (rows / TR) x (cols / TC) block and loads rows / TR + cols / TC values per step: the most
    square block that keeps at least 8 threads along the contiguous cols (64 x 64 on 4 warps: 8 x 4)."""
    threads = 32 * warps
    best = None
    for tc in (8, 16, 32):
        tr = max(1, min(rows, threads // tc))
        if tc > cols or rows % tr or cols % tc:
            continue
        cost = rows // tr + cols // tc
        if best is None or cost <= best[0]:
            best = (cost, tr, tc)
    return (best[1], best[2]) if best else (1, min(cols, 32))


def _padded_t(m: torch.Tensor, block: int) -> torch.Tensor:
    """m.T (D x rows), zero-padded to a whole number of blocks of rows so the kernels' feature loops load unmasked."""
    rows, dim = m.shape
    out = m.new_zeros(dim, triton.cdiv(rows, block) * block)
    out[:, :rows] = m.t()
    return out


def _feature_step(dim: int) -> int:
    """Features unrolled per loop step: the largest of 8, 4, 2, 1 dividing D (so no step reads past D)."""
    return next(step for step in (8, 4, 2, 1) if dim % step == 0)


def _int_power(p: float) -> int:
    """Code of the cheap form of v ** p in _pow: 1, 2, 3 (multiplications), 5 (p = 0.5) and 15 (p = 1.5) with a
    square root, else 0 (exp2/log2, two special-function calls per element)."""
    return {1.0: 1, 2.0: 2, 3.0: 3, 0.5: 5, 1.5: 15}.get(p, 0)


class L1HeadLoss(torch.autograd.Function):
    """Harmonic loss of an elementwise distance between a (N x D) and b (V x D): see the module docstring.

    aa, bb are per-row terms some distances need (bray-curtis-abs: sum |x|, sum |w|; chebyshev_smooth: max |x|,
    max |w|, which only the CUDA kernels read), zeros otherwise.
    """

    @staticmethod
    def forward(ctx, a, b, aa, bb, y, kind, n_exp, eps, p, alpha, scale, smoothing, ignore_index, reduction):
        n, dim = a.shape
        classes = b.shape[0]
        a, b = a.contiguous(), b.contiguous()
        bn, bv, warps = _blocks()
        aT, bT = _padded_t(a, bn), _padded_t(b, bv)
        aa, bb = aa.float().contiguous(), bb.float().contiguous()
        row_blocks, col_tiles = triton.cdiv(n, bn), triton.cdiv(classes, bv)
        tr, tc = _thread_grid(bn, bv, warps)
        splits = num_splits(row_blocks, col_tiles, a.device)
        tiles_per_split = triton.cdiv(col_tiles, splits)
        splits = triton.cdiv(col_tiles, tiles_per_split)
        m, s, zsum, zt = new_partials(splits, n, a.device)
        scalars = (n_exp, eps, p, alpha, scale)
        _forward_kernel[(row_blocks, splits)](
            aT, bT, aa, bb, y, m, s, zsum, zt, n, classes, dim, aT.stride(0), bT.stride(0), tiles_per_split, *scalars,
            KIND=kind, P_INT=_int_power(p), BN=bn, BV=bv, BK=_feature_step(dim), TR=tr, TC=tc, num_warps=warps,
        )  # fmt: skip
        lse, per_row = torch.empty(n, device=a.device), torch.empty(n, device=a.device)
        finish_rows((m, s, zsum, zt), y, lse, per_row, 0, n, classes, smoothing, ignore_index)
        valid = y != ignore_index
        count = valid.sum()
        loss = reduce_rows(per_row, count, reduction)
        ctx.save_for_backward(a, b, aT, bT, aa, bb, y, lse, valid, count)
        ctx.args = (kind, scalars, smoothing, reduction)
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        a, b, aT, bT, aa, bb, y, lse, valid, count = ctx.saved_tensors
        kind, scalars, smoothing, reduction = ctx.args
        p = scalars[2]
        n, dim = a.shape
        classes = b.shape[0]
        g = row_weights(grad_out, valid, count, reduction)
        bn, bv, warps = _blocks()
        f32 = dict(device=a.device, dtype=torch.float32)
        daa, dbb = torch.zeros(n, **f32), torch.zeros(classes, **f32)
        tr, tc = _thread_grid(bn, bv, warps)
        constants = dict(
            KIND=kind, P_INT=_int_power(p), PM1_INT=_int_power(p - 1.0), BN=bn, BV=bv, BK=_feature_step(dim),
            TR=tr, TC=tc, num_warps=warps,
        )  # fmt: skip
        if BACKWARD == "outer":
            da, db = torch.zeros(n, dim, **f32), torch.zeros(classes, dim, **f32)
            tiles = triton.cdiv(n, bn) * triton.cdiv(classes, bv)
            programs = _persistent_programs(tiles, a.device)
            scratch = torch.empty(programs * 4 * bn * bv, **f32)
            bkd = 16 if INTERPRET else FEATURE_BLOCK
            (xr, xk), (wr, wk) = _thread_grid(bn, bkd, warps), _thread_grid(bv, bkd, warps)
            _backward_outer_kernel[(programs,)](
                aT, bT, a, b, aa, bb, y, lse, g, da, db, daa, dbb, scratch, n, classes, dim, aT.stride(0), bT.stride(0),
                *scalars, smoothing,
                BKD=bkd, XR=xr, XK=xk, WR=wr, WK=wk, EVEN_K=dim % bkd == 0, **constants,
            )  # fmt: skip
        else:
            daT, dbT = torch.zeros(dim, n, **f32), torch.zeros(dim, classes, **f32)
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
                aT.stride(0),
                bT.stride(0),
                *scalars,
                smoothing,
                **constants,
            )
            da, db = daT.t(), dbT.t()
        da, db = denominator_grads(kind, a, b, da, db, daa, dbb)
        grads_aa = daa if ctx.needs_input_grad[2] and kind != BRAYABS else None
        grads_bb = dbb if ctx.needs_input_grad[3] and kind != BRAYABS else None
        return da.to(a.dtype), db.to(b.dtype), grads_aa, grads_bb, *([None] * 10)


def denominator_grads(kind, a, b, da, db, daa, dbb):
    """BRAYABS: add the gradient of its denominator aa = sum |a|, bb = sum |b| to da, db (fp32), so the two parts of
    each gradient are summed before the one rounding to the inputs' dtype (as the reference's autograd does); aa, bb
    arrive detached. Other kinds: da, db unchanged."""
    if kind != BRAYABS:
        return da, db
    if da is not None:
        da = da + daa[:, None] * a.float().sign()
    if db is not None:
        db = db + dbb[:, None] * b.float().sign()
    return da, db


# ---- Hook: the CUDA C++ kernels of harmonic/kernels/l1_cuda (manhattan, hamming_soft, bray_curtis_abs) ----------
def l1_head_loss(a, b, aa, bb, y, kind, *args):
    """L1HeadLoss.apply(a, b, aa, bb, y, kind, ...), or the same through the CUDA C++ kernels where they cover the
    call and build (HARMONIC_L1_CUDA, see harmonic/kernels/l1_cuda); any other case runs the Triton kernels."""
    from harmonic.kernels import l1_cuda

    if l1_cuda.wanted(kind, a, b):
        return l1_cuda.L1CudaHeadLoss.apply(a, b, aa, bb, y, kind, *args)
    return L1HeadLoss.apply(a, b, aa, bb, y, kind, *args)
