"""Fused harmonic heads: the loss computed straight from x (N x D), centres W (V x D) and targets, never writing the
N x V distance or logit matrix, so every registry distance works at language-model vocabulary sizes.

    supports(distance, device) -> bool
    fused_harmonic_loss(x, centres, targets, *, distance, n, eps, params, factor=None, ...) -> loss

Two kernel families (docs/performance.md has their speed): matmul_heads.py for distances that are a function of one
dot product per pair (tensor cores) and l1_heads.py for the elementwise ones (CUDA cores). Here each distance is
reduced to one of their kinds with ordinary torch ops (x L for mahalanobis, sigmoid bits for hamming, the training
noise of hamming_gumbel), so autograd carries the gradient through those steps and the kernels stay small. Under
autocast the operands take autocast's dtype, as F.linear's would.

Triton kernels run on CUDA, or on the CPU under TRITON_INTERPRET=1 (how tests/kernels checks them against the
reference: harmonic.pairwise, then -n log(d + eps), then F.cross_entropy). Any case the kernels do not cover
(float64 inputs, minkowski p outside [1, 8]) takes that reference path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from harmonic.distances import TINY, _logistic_noise, _straight_through_bits, get_distance, pairwise
from harmonic.harmax import check_harmax_args, harmax_logits
from harmonic.kernels import l1_heads, matmul_heads
from harmonic.kernels._loss import INTERPRET, assert_targets_async, checked_targets

# Distances with a fused kernel (hamming_gumbel: its training noise is drawn with torch in _prepare, as the reference
# draws it, then the bits go through the manhattan kernel).
FUSED = (
    "euclidean",
    "cosine",
    "mahalanobis",
    "mahalanobis_diagonal",
    "hamming_hard",
    "manhattan",
    "minkowski",
    "chebyshev",
    "chebyshev_smooth",
    "canberra",
    "bray_curtis",
    "bray_curtis_abs",
    "hamming_soft",
    "hamming_gumbel",
)
MINKOWSKI_P_RANGE = (1.0, 8.0)  # below 1 the gradient is singular at 0; above 8 |u|^p can underflow in fp32
REDUCTIONS = ("mean", "sum", "none")


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
    p = params.get("p", 2.0)
    use_reference = (
        not supports(distance, x.device)
        or torch.float64 in (x.dtype, centres.dtype)
        or (distance == "minkowski" and not MINKOWSKI_P_RANGE[0] <= p <= MINKOWSKI_P_RANGE[1])
    )
    if use_reference:
        return reference_harmonic_loss(x, centres, targets, **reference)
    x2 = x.reshape(-1, x.shape[-1])
    y = checked_targets(targets, x2.shape[0], centres.shape[0], ignore_index)
    family, kind, a, b, aa, bb, consts = _prepare(distance, x2, centres, params, factor, training)
    # The kernels pick their own precisions (16-bit operands, fp32 accumulation): no autocast inside.
    with torch.autocast(x.device.type, enabled=False):
        if family == "matmul":
            (scale,) = consts
            loss = matmul_heads.MatmulHeadLoss.apply(
                a, b, aa, bb, y, kind, float(n), float(eps), scale, float(label_smoothing), ignore_index, reduction
            )
        else:
            p, alpha, scale = consts
            loss = l1_heads.l1_head_loss(
                a, b, aa, bb, y, kind, float(n), float(eps), p, alpha, scale, float(label_smoothing), ignore_index,
                reduction,
            )  # fmt: skip
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


def _prepare(name: str, x: Tensor, w: Tensor, params: dict, factor: Tensor | None, training: bool):
    """Reduce a registry distance to a kernel kind: (family, kind, a, b, aa, bb, constants), all torch ops."""
    dim = x.shape[1]
    dtype = _compute_dtype(x, w)
    if name == "minkowski" and params["p"] == 2.0:
        name = "euclidean"  # identical function; the GEMM form is ~20x cheaper than CUDA-core tiles
    if name in ("euclidean", "mahalanobis", "mahalanobis_diagonal"):
        a, b = x, w
        if name == "mahalanobis" and factor is not None:
            if tuple(factor.shape) != (dim, dim):
                raise ValueError(f"mahalanobis: factor must have shape ({dim}, {dim}), got {tuple(factor.shape)}")
            a, b = x.float() @ factor.float(), w.float() @ factor.float()
        elif name == "mahalanobis_diagonal" and factor is not None:
            if tuple(factor.shape) != (dim,):
                raise ValueError(
                    f"mahalanobis_diagonal: diagonal must have shape ({dim},), got {tuple(factor.shape)}"
                )
            root = factor.float().clamp_min(0.0).sqrt()
            a, b = x.float() * root, w.float() * root
        # aa = |a|^2, bb = |b|^2 are computed inside the kernel's autograd Function, which also adds their gradient
        return "matmul", matmul_heads.EUCLID, a.to(dtype), b.to(dtype), None, None, (1.0,)
    if name == "cosine":  # the normalisation (and its gradient) happens inside the Function
        return "matmul", matmul_heads.COSINE, x.to(dtype), w.to(dtype), None, None, (1.0,)
    if name == "hamming_hard":
        bits_x = _straight_through_bits(x.float(), params["T"], params["threshold"])
        bits_w = _straight_through_bits(w.float(), params["T"], params["threshold"])
        aa, bb = bits_x.sum(-1), bits_w.sum(-1)
        return "matmul", matmul_heads.LINEAR, bits_x.to(dtype), bits_w.to(dtype), aa, bb, (1.0 / dim,)
    p, alpha, scale = 1.0, 1.0, 1.0
    aa, bb = torch.zeros(x.shape[0], device=x.device), torch.zeros(w.shape[0], device=x.device)
    a, b = x, w
    if name in ("manhattan", "hamming_soft", "hamming_gumbel"):
        kind = l1_heads.MANHATTAN
        if name != "manhattan":
            a, b = x.float(), w.float()
            if name == "hamming_gumbel" and training and params["noise"] > 0:
                a = a + params["noise"] * _logistic_noise(a)
                b = b + params["noise"] * _logistic_noise(b)
            a, b = torch.sigmoid(a / params["T"]), torch.sigmoid(b / params["T"])
            scale = 1.0 / dim
    elif name == "minkowski":
        kind, p = l1_heads.MINKOWSKI, params["p"]
        if p == 1.0:
            kind = l1_heads.MANHATTAN
        else:
            # d(x, w) = c d(x / c, w / c): a power-of-two c (exact in any dtype) keeps every |u| <= 2 so |u|^p
            # cannot overflow; c is a constant, so the gradient is unchanged.
            largest = max(float(x.detach().abs().max()), float(w.detach().abs().max()), TINY)
            scale = 2.0 ** math.ceil(math.log2(largest))
            a, b = x / scale, w / scale
    elif name == "chebyshev":
        kind = l1_heads.CHEBYSHEV
    elif name == "chebyshev_smooth":
        kind, alpha = l1_heads.SMOOTH, params["alpha"]
    elif name == "canberra":
        kind = l1_heads.CANBERRA
    elif name == "bray_curtis":
        kind = l1_heads.BRAYCURTIS
    elif name == "bray_curtis_abs":
        kind = l1_heads.BRAYABS
        aa, bb = x.float().abs().sum(-1), w.float().abs().sum(-1)
    else:
        raise ValueError(f"no fused kernel for distance {name!r}")
    return "l1", kind, a, b, aa, bb, (float(p), float(alpha), float(scale))
