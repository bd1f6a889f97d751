"""The dispatch behind harmonic.kernels: checks the arguments, takes the reference path for what no kernel covers,
else asks the distance's registry entry (harmonic.distances) for its kernel operands and hands them to the
implementation of its kernel family.

    distance.kernel                    "matmul" | "l1" | None: the family that serves it
    distance.kernel_covers(params)     False for parameters the kernel does not handle (minkowski p outside [1, 8])
    distance.kernel_operands(...)      KernelOperands: family, kind, operands and constants, built with torch ops
    IMPLEMENTATIONS[family](operands, targets, ...) -> loss

Adding a distance to a kernel family is a kernel_operands method on its registry class (and the kind in the
family's kernel); adding an implementation of a family is one entry of IMPLEMENTATIONS.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from harmonic.distances import KernelOperands, distance_names, get_distance, pairwise
from harmonic.harmax import check_harmax_args, harmax_logits
from harmonic.kernels import l1_heads, matmul_heads
from harmonic.kernels._loss import INTERPRET, assert_targets_async, checked_targets

REDUCTIONS = ("mean", "sum", "none")


def _matmul_loss(ops: KernelOperands, y: Tensor, *, n, eps, smoothing, ignore_index, reduction) -> Tensor:
    """Tensor-core kernels (matmul_heads.py): distances that are a function of one dot product per pair."""
    return matmul_heads.MatmulHeadLoss.apply(
        ops.a, ops.b, ops.aa, ops.bb, y, matmul_heads.KINDS[ops.kind], float(n), float(eps), ops.scale,
        float(smoothing), ignore_index, reduction,
    )  # fmt: skip


def _l1_loss(ops: KernelOperands, y: Tensor, *, n, eps, smoothing, ignore_index, reduction) -> Tensor:
    """CUDA-core kernels (l1_heads.py) for the elementwise distances; aa, bb are zeros where the kind has none."""
    aa = ops.aa if ops.aa is not None else torch.zeros(ops.a.shape[0], device=ops.a.device)
    bb = ops.bb if ops.bb is not None else torch.zeros(ops.b.shape[0], device=ops.a.device)
    return l1_heads.l1_head_loss(
        ops.a, ops.b, aa, bb, y, l1_heads.KINDS[ops.kind], float(n), float(eps), float(ops.p), float(ops.alpha),
        float(ops.scale), float(smoothing), ignore_index, reduction,
    )  # fmt: skip


# Kernel family (a registry distance's `kernel`) -> the function that computes the loss from its KernelOperands.
IMPLEMENTATIONS = {"matmul": _matmul_loss, "l1": _l1_loss}
# Registry distances some kernel serves (hamming_gumbel: its training noise is drawn with torch first, as the
# reference draws it, then its bits go through the l1 kernel's manhattan kind).
FUSED = tuple(name for name in distance_names() if get_distance(name).kernel in IMPLEMENTATIONS)


def supports(distance: str, device) -> bool:
    """True when the fused kernel covers this distance on this device (CUDA, or CPU under TRITON_INTERPRET=1)."""
    device = torch.device(device)
    return distance in FUSED and (device.type == "cuda" or (INTERPRET and device.type == "cpu"))


def reference_harmonic_loss(
    x: Tensor,
    centres: Tensor,
    targets: Tensor,
    *,
    distance: str,
    n: float,
    eps: float,
    params: dict | None = None,
    factor: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    training: bool = False,
) -> Tensor:
    """The plain-PyTorch definition the kernels must match: pairwise -> -n log(d + eps) -> F.cross_entropy."""
    tensors = {}
    if factor is not None:
        tensors = {"factor": factor} if distance == "mahalanobis" else {"diagonal": factor}
    d = pairwise(distance, x.reshape(-1, x.shape[-1]), centres, training=training, **tensors, **(params or {}))
    return F.cross_entropy(
        harmax_logits(d, n, eps),
        targets.reshape(-1),
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )


# Kept out of torch.compile graphs (a graph break): the kernels are already fused by hand, and inductor, when it
# traces a user Triton kernel, passes Python float scalars (n, eps) as fp64, which breaks the fp32 loop-carried
# log-sum-exp state (seen on an H100 with torch 2.11). The compiled model runs around this call.
@torch.compiler.disable
def fused_harmonic_loss(
    x: Tensor,
    centres: Tensor,
    targets: Tensor,
    *,
    distance: str,
    n: float,
    eps: float,
    params: dict | None = None,
    factor: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    training: bool = False,
) -> Tensor:
    """Harmonic loss F.cross_entropy(-n log(d(x, centres) + eps), targets) without the N x V matrix.

    x: (..., D); centres: (V, D); targets: integer (...). factor: the mahalanobis factor L (M = L L^T) or the
    mahalanobis_diagonal diagonal m (M = diag(m)); None means the identity. training only matters for
    hamming_gumbel (its noise). Same arguments and result as reference_harmonic_loss.
    """
    params = get_distance(distance).resolve(dict(params or {}))
    check_harmax_args(n, eps)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS} (got {reduction!r})")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1] (got {label_smoothing!r})")
    if centres.dim() != 2 or x.shape[-1] != centres.shape[1]:
        raise ValueError(
            f"{distance}: x (..., D) and centres (V, D) must share D; got {tuple(x.shape)} and {tuple(centres.shape)}"
        )
    if x.device != centres.device:
        raise ValueError(f"x is on {x.device} but centres on {centres.device}")
    reference = dict(
        distance=distance,
        n=n,
        eps=eps,
        params=params,
        factor=factor,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
        training=training,
    )
    use_reference = (
        not supports(distance, x.device)
        or torch.float64 in (x.dtype, centres.dtype)
        or not get_distance(distance).kernel_covers(params)
    )
    if use_reference:
        return reference_harmonic_loss(x, centres, targets, **reference)
    x2 = x.reshape(-1, x.shape[-1])
    y = checked_targets(targets, x2.shape[0], centres.shape[0], ignore_index)
    if get_distance(distance).kernel == "l1" and torch.is_autocast_enabled(x.device.type):
        # Under autocast the elementwise heads take autocast's operand type, as F.linear and the matmul heads do
        # (their sums stay fp32): on CUDA the bf16 operands take the kernels' 2-instruction order-key path.
        dtype = torch.get_autocast_dtype(x.device.type)
        x2, centres = x2.to(dtype), centres.to(dtype)
    operands = get_distance(distance).kernel_operands(
        x2, centres, params, factor, training, _compute_dtype(x2, centres)
    )
    # The kernels pick their own precisions (16-bit operands, fp32 accumulation): no autocast inside.
    with torch.autocast(x.device.type, enabled=False):
        loss = IMPLEMENTATIONS[operands.family](
            operands, y, n=n, eps=eps, smoothing=label_smoothing, ignore_index=ignore_index, reduction=reduction
        )
    if y.is_cuda:  # after the kernels are enqueued, so the GPU starts on them at once
        assert_targets_async(y, centres.shape[0], ignore_index)
    return loss


def _compute_dtype(x: Tensor, w: Tensor) -> torch.dtype:
    """Tensor-core operand type: autocast's type when autocast is on (as F.linear would run there), else the
    16-bit type if either input has one, else float32 (fp32 GEMMs: the accurate but slow path)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    for t in (x, w):
        if t.dtype in (torch.bfloat16, torch.float16):
            return t.dtype
    return torch.float32
