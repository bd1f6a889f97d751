"""Training of toy cells: the objective, the result record, and the entry point for one cell.

The loop itself is harmonic/toy/batched.py (ToyGroup): AdamW, mini-batches of batch_size, the embedding penalty,
the full train and test splits evaluated after every epoch (the grokking epochs need per-epoch accuracy), and a
cell stopped where its loss stops being finite. One cell is a group of one; a group's cells get exactly the numbers
they would get alone.
"""

from dataclasses import dataclass, field

import numpy as np
import torch.nn.functional as F

from harmonic.regularizers import embedding_penalty


@dataclass
class ToyResult:
    """What one training run produced: per-epoch curves, the final token embedding, and divergence if any."""

    curves: list = field(default_factory=list)  # one dict per epoch
    embedding: np.ndarray | None = None
    state: dict | None = None  # the final parameters by name (tied ones once), for harmonic.toy.stitching
    diverged_at: dict | None = None
    overlap_fraction: float = 0.0
    n_train: int = 0
    n_test: int = 0
    n_parameters: int = 0


def cell_loss(logits, y, weight, embedding, penalty):
    """One cell's objective on one batch: cross-entropy averaged over the real rows (weight 1; padding rows have
    weight 0) plus penalty * the embedding penalty of the token embedding."""
    ce = (F.cross_entropy(logits, y, reduction="none") * weight).sum() / weight.sum()
    return ce + penalty * embedding_penalty(embedding)


def train_toy(hp, device="cpu", log=print):
    """Train one cell described by the resolved hyperparameters ``hp`` (see config.yaml, section toy): a group of
    one, so it gets the numbers it would get batched with others."""
    from harmonic.toy.batched import ToyGroup  # batched.py imports this module's objective

    (result,) = ToyGroup([hp], device=device).run(log=log)
    return result
