"""HarMax: p_i = d_i^-n / sum_j d_j^-n, computed in log space so it never underflows (n from 0.5 to 2000).

logits_i = -n * log(d_i + eps), then log_softmax. n is the exponent on d (paper form); the original code raised
d^2 to -n, i.e. its n is half of ours (docs/deviations.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from harmonic.distances import pairwise

# Added to d before the log: keeps the logit of a centre hit exactly (d = 0) finite, -n * log(1e-8) = 18.4 n.
# Far below any distance that matters in float32 (d is computed in fp32), so it does not change p elsewhere.
DEFAULT_EPS = 1e-8


def check_harmax_args(n: float, eps: float) -> None:
    """Bad exponent or eps -> ValueError naming it (before any work)."""
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not (n > 0 and n < float("inf")):
        raise ValueError(f"HarMax exponent 'n' must be a finite number > 0 (got {n!r})")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (eps >= 0 and eps < float("inf")):
        raise ValueError(f"HarMax 'eps' must be a finite number >= 0 (got {eps!r})")


def harmax_logits(d: Tensor, n: float = 1.0, eps: float = DEFAULT_EPS) -> Tensor:
    """-n * log(d + eps) in float32 (float64 stays float64): the logits whose softmax is HarMax."""
    check_harmax_args(n, eps)
    dtype = torch.float64 if d.dtype == torch.float64 else torch.float32
    return -n * torch.log(d.to(dtype) + eps)


def harmax_log_probs(d: Tensor, n: float = 1.0, eps: float = DEFAULT_EPS) -> Tensor:
    """log p over the last dimension for distances d (..., C): exp of each row sums to 1."""
    return F.log_softmax(harmax_logits(d, n, eps), dim=-1)


def harmonic_loss(
    x: Tensor, w: Tensor, y: Tensor, distance: str = "euclidean", n: float = 1.0, eps: float = DEFAULT_EPS, **params
) -> Tensor:
    """Mean harmonic loss -log p_y for inputs x (..., D), centres w (C x D), integer labels y (...).

    params go to the distance (e.g. p=3, or matrix=M for mahalanobis). Equals
    F.cross_entropy(HarmonicHead(...)(x), y) for a head with the same centres.
    """
    check_harmax_args(n, eps)
    d = pairwise(distance, x, w, **params)
    return F.nll_loss(harmax_log_probs(d, n, eps).reshape(-1, w.shape[0]), y.reshape(-1))
