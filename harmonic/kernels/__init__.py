"""Fused harmonic heads: the loss computed straight from x (N x D), centres W (V x D) and targets, never writing the
N x V distance or logit matrix, so every registry distance with a kernel works at language-model vocabulary sizes.

    supports(distance, device) -> bool
    fused_harmonic_loss(x, centres, targets, *, distance, n, eps, params, factor=None, ...) -> loss
    reference_harmonic_loss(...)   the plain-PyTorch definition the kernels must match

Which kernel serves a distance is declared on the registry (harmonic.distances: each distance's `kernel` family and
its kernel_operands, the reduction to one of the family's kinds with ordinary torch ops, so autograd carries the
gradient through them and the kernels stay small); dispatch.py looks the family up. Two kernel families
(docs/performance.md has their speed): matmul_heads.py for distances that are a function of one dot product per
pair (tensor cores) and l1_heads.py for the elementwise ones (CUDA cores). Under autocast the operands take
autocast's dtype, as F.linear's would.

Triton kernels run on CUDA, or on the CPU under TRITON_INTERPRET=1 (how tests/kernels checks them against the
reference: harmonic.pairwise, then -n log(d + eps), then F.cross_entropy). Any case the kernels do not cover
(float64 inputs, minkowski p outside [1, 8]) takes that reference path.
"""

from harmonic.kernels.dispatch import (
    FUSED,
    IMPLEMENTATIONS,
    REDUCTIONS,
    fused_harmonic_loss,
    reference_harmonic_loss,
    supports,
)

__all__ = ["FUSED", "IMPLEMENTATIONS", "REDUCTIONS", "fused_harmonic_loss", "reference_harmonic_loss", "supports"]
