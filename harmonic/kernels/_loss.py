"""Loss pieces shared by every fused head: the online log-sum-exp over V tiles, the gradient with respect to d, and
the host-side bookkeeping (splits, combining partial statistics, reductions, ignore_index, label smoothing).

The loss of row i with logits z_ij = -n log(d_ij + eps) and label smoothing s is (as F.cross_entropy)
    loss_i = lse_i - (1 - s) z_{i,y_i} - (s / V) sum_j z_ij
so the forward kernels only need three numbers per row: lse_i (kept as a running max m and sum of exp), z at the
target and the sum of z. The gradient with respect to z is g_i (p_ij - (1 - s)[j = y_i] - s / V); times
dz/dd = -n / (d + eps) it becomes the gradient with respect to d that each distance family turns into dx and dW.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# Read once at import: the @triton.jit decorators below chose interpreter or compiler at that moment too.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def lse_stats_update(d, cols, col_ok, y, m, s, zsum, zt, n_exp, eps):
    """Fold one (rows x cols) tile of distances into the running row statistics (max, sum exp, sum z, z[y])."""
    z = -n_exp * tl.log(d + eps)
    z_lse = tl.where(col_ok[None, :], z, float("-inf"))
    m_new = tl.maximum(m, tl.max(z_lse, axis=1))
    s = s * tl.exp(m - m_new) + tl.sum(tl.exp(z_lse - m_new[:, None]), axis=1)
    zsum += tl.sum(tl.where(col_ok[None, :], z, 0.0), axis=1)
    zt += tl.sum(tl.where(cols[None, :] == y[:, None], z, 0.0), axis=1)
    return m_new, s, zsum, zt


_INTERPRET = tl.constexpr(INTERPRET)
LOG2E = tl.constexpr(1.4426950408889634)  # 1 / ln 2 (constexpr: read inside kernels)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def fast_log2(x):
    """log2 by the GPU's lg2.approx instruction (relative error about 2^-22): tl.log2 compiles to libdevice's
    log2f, a branchy software routine that made the elementwise passes compute-bound. The CPU interpreter has no
    PTX, so it takes tl.log2."""
    if _INTERPRET:
        return tl.log2(x)
    else:
        return tl.inline_asm_elementwise(
            "lg2.approx.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
        )


@triton.jit
def online_lse_update(z2, m2, s2):
    """Elementwise online log-sum-exp in base 2 (z2 = logit / ln 2): each tile position keeps its own running max
    m2 and sum s2 of 2^(z2 - m2), so no cross-thread reduction happens until the end of the sweep (lse_finish).
    One exp2 per element: whichever of z2 and m2 is smaller is the one rescaled."""
    e = tl.exp2(-tl.abs(z2 - m2))
    s2 = tl.where(z2 > m2, s2 * e + 1.0, s2 + e)
    return tl.maximum(m2, z2), s2


@triton.jit
def lse_finish(m2, s2):
    """Row statistics (max in natural-log units, sum of exp relative to it) from the elementwise accumulators."""
    row_max = tl.max(m2, axis=1)
    row_sum = tl.sum(s2 * tl.exp2(m2 - row_max[:, None]), axis=1)
    return row_max * LN2, row_sum


@triton.jit
def load_tile_terms(y_ptr, lse_ptr, g_ptr, aa_ptr, bb_ptr, rows, row_ok, cols, col_ok):
    """What a backward tile needs besides its distances: targets, lse and loss weights of its rows, and the
    per-row / per-centre terms aa, bb."""
    y = tl.load(y_ptr + rows, mask=row_ok, other=-1)
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0)
    g = tl.load(g_ptr + rows, mask=row_ok, other=0.0)
    aa = tl.load(aa_ptr + rows, mask=row_ok, other=0.0)
    bb = tl.load(bb_ptr + cols, mask=col_ok, other=0.0)
    return y, lse, g, aa, bb


@triton.jit
def grad_wrt_distance(d, eps, cols, tile_ok, y, lse, g, n_exp, smoothing, V):
    """dLoss/dd for one tile: g_i (p_ij - target_ij) (-n / (d_ij + eps)); 0 outside tile_ok and on ignored rows.
    With l = log2(d + eps): p = 2^(-n l - lse / ln 2) and 1 / (d + eps) = 2^-l, so one log2 and two exp2 per
    element."""
    log2_d = fast_log2(d + eps)
    p = tl.exp2(-n_exp * log2_d - lse[:, None] * LOG2E)
    target = tl.where(cols[None, :] == y[:, None], 1.0 - smoothing, 0.0) + smoothing / V
    gd = g[:, None] * (p - target) * (-n_exp * tl.exp2(-log2_d))
    return tl.where(tile_ok & (g[:, None] != 0.0), gd, 0.0)


def num_splits(row_blocks: int, col_tiles: int, device: torch.device) -> int:
    """How many V ranges each row block is split into so the forward grid fills the GPU (~4 programs per SM)."""
    if INTERPRET or device.type != "cuda":
        return min(2, col_tiles)  # exercises the split/combine path in the CPU tests
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(col_tiles, triton.cdiv(4 * sms, row_blocks)))


def new_partials(splits: int, n: int, device: torch.device) -> list[torch.Tensor]:
    """Per-split row statistics written by the forward kernels: running max, sum exp, sum z, z at the target."""
    return [torch.empty(splits, n, device=device, dtype=torch.float32) for _ in range(4)]


@triton.jit
def _finish_rows_kernel(m_ptr, s_ptr, zsum_ptr, zt_ptr, y_ptr, lse_ptr, loss_ptr, row0, rows, N, splits,
                        ignore_index, smoothing, V, BM: tl.constexpr):  # fmt: skip
    """Per row: lse over the splits' partial statistics, and the row's loss (0 where the target is ignored)."""
    r = row0 + tl.program_id(0) * BM + tl.arange(0, BM)
    ok = r < row0 + rows
    top = tl.full((BM,), float("-inf"), tl.float32)
    for k in range(splits):
        top = tl.maximum(top, tl.load(m_ptr + k * N + r, mask=ok, other=0.0))
    total = tl.zeros((BM,), tl.float32)
    zsum = tl.zeros((BM,), tl.float32)
    zt = tl.zeros((BM,), tl.float32)
    for k in range(splits):
        m = tl.load(m_ptr + k * N + r, mask=ok, other=0.0)
        total += tl.load(s_ptr + k * N + r, mask=ok, other=1.0) * tl.exp(m - top)
        zsum += tl.load(zsum_ptr + k * N + r, mask=ok, other=0.0)
        zt += tl.load(zt_ptr + k * N + r, mask=ok, other=0.0)
    lse = top + tl.log(total)
    y = tl.load(y_ptr + r, mask=ok, other=ignore_index)
    loss = tl.where(y != ignore_index, lse - (1.0 - smoothing) * zt - (smoothing / V) * zsum, 0.0)
    tl.store(lse_ptr + r, lse, mask=ok)
    tl.store(loss_ptr + r, loss, mask=ok)


def finish_rows(stats, y, lse, per_row, row0, rows, num_classes, smoothing, ignore_index):
    """lse and per-row losses (0 on ignored rows) of rows row0 .. row0 + rows from the per-split statistics, in
    one launch, written into lse and per_row."""
    m, s, zsum, zt = stats
    bm = 16 if INTERPRET else 128
    _finish_rows_kernel[(triton.cdiv(rows, bm),)](
        m, s, zsum, zt, y, lse, per_row, row0, rows, y.shape[0], m.shape[0], ignore_index, float(smoothing),
        num_classes, BM=bm,
    )  # fmt: skip


def reduce_rows(per_row, count, reduction):
    """The loss from per-row losses: mean over counted rows (count), sum, or the rows themselves."""
    if reduction == "mean":
        return per_row.sum() / count
    if reduction == "sum":
        return per_row.sum()
    return per_row


def row_weights(grad_out, valid, count, reduction):
    """dLoss_total/dloss_i for every row (0 on ignored rows), in float32."""
    grad_out = grad_out.float()
    if reduction == "mean":
        grad_out = grad_out / count
    return (grad_out * valid).contiguous()


def checked_targets(y: torch.Tensor, n: int, num_classes: int, ignore_index: int) -> torch.Tensor:
    """Targets flattened and contiguous (int64 or int32 as given, smaller integer types widened to int32), after
    checking their shape and dtype; on the CPU also their range (a ValueError). On CUDA the range check is
    assert_targets_async, which the caller enqueues after the kernels (they never index memory with a label)."""
    y = y.reshape(-1)
    if y.numel() != n:
        raise ValueError(f"targets: expected {n} labels (one per row of x), got {y.numel()}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"targets must be an integer tensor (got {y.dtype})")
    if not y.is_cuda:
        bad = ((y < 0) | (y >= num_classes)) & (y != ignore_index)
        if bool(bad.any()):
            raise ValueError(f"{_label_message(num_classes, ignore_index)}; got {y[bad][:5].tolist()}")
    if y.dtype not in (torch.int64, torch.int32):
        y = y.to(torch.int32)
    return y.contiguous()


def assert_targets_async(y: torch.Tensor, num_classes: int, ignore_index: int) -> None:
    """The range check of CUDA targets as a device-side assertion (F.cross_entropy's behaviour): reading the
    answer back on the host would stall the training loop on every step."""
    bad = ((y < 0) | (y >= num_classes)) & (y != ignore_index)
    torch._assert_async(~bad.any(), _label_message(num_classes, ignore_index))


def _label_message(num_classes: int, ignore_index: int) -> str:
    return f"targets: labels must be in [0, {num_classes}) or equal ignore_index={ignore_index}"
