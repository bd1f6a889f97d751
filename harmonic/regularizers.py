"""Optional regularizers used by the papers' code (both off unless a config turns them on).

- embedding_penalty (Baek et al.): lambda * mean_j sqrt(mean_i E_ij^2), the mean over embedding dimensions j of the
  RMS over tokens i (a group norm, not a squared L2); lambda = 0.01 in the paper's toy experiments.
- distance_regularizer (Miller-Golub et al.'s optional feature, kept off in their published runs):
  R = mean over distinct pairs (i != j) of a batch's features of d(f_i, f_j) under a registry distance. Adding
  lambda * R pulls a batch's features together; lambda = 0 (the default) turns it off.
"""

from __future__ import annotations

from torch import Tensor

from harmonic.distances import pairwise


def embedding_penalty(embedding: Tensor) -> Tensor:
    """mean_j sqrt(mean_i E_ij^2) for an embedding matrix E (tokens x dims): a scalar."""
    if embedding.dim() != 2:
        raise ValueError(
            f"embedding_penalty expects a 2-D (tokens x dims) matrix, got shape {tuple(embedding.shape)}"
        )
    return embedding.pow(2).mean(0).sqrt().mean()


def distance_regularizer(features: Tensor, distance: str = "euclidean", **params) -> Tensor:
    """Mean pairwise distance between the distinct rows of features (N x D) under a registry distance; 0 for N < 2."""
    features = features.reshape(-1, features.shape[-1])
    count = features.shape[0]
    d = pairwise(distance, features, features, **params)
    if count < 2:
        return d.sum() * 0.0
    # The diagonal d(f_i, f_i) is excluded: for some distances (chebyshev_smooth) it is not exactly 0.
    off_diagonal = d.sum() - d.diagonal().sum()
    return off_diagonal / (count * (count - 1))


def regularized_loss(
    loss: Tensor, features: Tensor, lam: float = 0.0, distance: str = "euclidean", **params
) -> Tensor:
    """loss + lam * distance_regularizer(features); returns loss unchanged when lam == 0 (the default: off)."""
    if lam < 0:
        raise ValueError(f"regularizer weight 'lam' must be >= 0 (got {lam!r})")
    if lam == 0:
        return loss
    return loss + lam * distance_regularizer(features, distance, **params)
