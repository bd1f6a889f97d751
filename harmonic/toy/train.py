"""Training of toy cells: the objective, the result record, and the toy family's part of the cell contract
(harmonic.cell): train_cell returns a cell's metrics, curves and embedding; FAMILY names it with resolve and outputs.

The loop itself is harmonic/toy/batched.py (ToyGroup): AdamW, mini-batches of batch_size, the embedding penalty,
the full train and test splits evaluated after every epoch (the grokking epochs need per-epoch accuracy), and a
cell stopped where its loss stops being finite. One cell is a group of one; a group's cells get exactly the numbers
they would get alone.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch.nn.functional as F

from harmonic.cell import Family, Trained
from harmonic.metrics import grokking_epoch, pca_summary
from harmonic.regularizers import embedding_penalty
from harmonic.toy.config import resolve
from harmonic.toy.datasets import ev_rows
from harmonic.toy.geneft import phase_metrics

OUTPUTS = ("metrics.json", "curves.csv", "emissions.csv", "embedding.npy", "model.pt")  # rules/toy.smk declares these
CURVE_COLUMNS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc"]
TWO_POINT_COLUMNS = ["step", "loss", "weight_norm"]


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

    (result,) = ToyGroup([hp], device=device, compile=hp.get("compile", False)).run(log=log)
    return result


def train_cell(hp, ctx):
    """The toy family's train function for harmonic.cell: one cell, its curves, embedding and metrics."""
    if hp["study"] == "two_points":
        return train_two_point_cell(hp, ctx)
    result = train_toy(hp, device=ctx.device, log=ctx.log)
    return trained(hp, result)


def train_two_point_cell(hp, ctx):
    from harmonic.toy.two_points import train_two_points

    rows, weight, metrics = train_two_points(hp, log=ctx.log)
    return Trained(
        metrics=metrics,
        files={"curves.csv": pd.DataFrame(rows, columns=TWO_POINT_COLUMNS), "embedding.npy": weight, "model.pt": {}},
        diverged=not np.isfinite(weight).all(),
        summary=shown(metrics),
    )


def trained(hp, result):
    """A ToyResult as the cell contract records it (benchmarks/toy_grid.py records batched cells through it too)."""
    metrics, curves = cell_metrics(hp, result)
    embedding = result.embedding if result.embedding is not None else placeholders(hp)["embedding.npy"]
    state = result.state if result.state is not None else {}  # model.pt: the final parameters, for stitching
    return Trained(
        metrics=metrics,
        files={"curves.csv": curves, "embedding.npy": embedding, "model.pt": state},
        diverged_at=result.diverged_at or None,
        summary=shown(metrics),
    )


def shown(metrics):
    keys = ("final_test_acc", "ev_pc1_pc2", "centre_distance_final", "weight_norm_growth")
    return {key: metrics[key] for key in keys if key in metrics}


def placeholders(hp):
    """A failed cell's curves.csv (the header), embedding.npy (no rows) and model.pt (no parameters)."""
    hp = hp or {}
    columns = TWO_POINT_COLUMNS if hp.get("study") == "two_points" else CURVE_COLUMNS
    return {
        "curves.csv": pd.DataFrame(columns=columns),
        "embedding.npy": np.zeros((0, hp.get("embed_dim", 2)), dtype=np.float32),
        "model.pt": {},
    }


def cell_metrics(hp, result):
    """Final numbers, grokking epochs (1-based; None = never) and the embedding's PCA summary."""
    curves = pd.DataFrame(result.curves, columns=CURVE_COLUMNS)
    metrics = dict(
        epochs_run=len(curves),
        n_train=result.n_train,
        n_test=result.n_test,
        n_parameters=result.n_parameters,
        test_overlap_fraction=result.overlap_fraction,
    )
    if len(curves):
        last = curves.iloc[-1]
        metrics.update({f"final_{key}": float(last[key]) for key in CURVE_COLUMNS[1:]})
    metrics.update(phase_metrics(hp, metrics.get("final_test_acc")))
    for split in ("train", "test"):
        index = grokking_epoch(
            curves[f"{split}_acc"].tolist(), threshold=hp["grokking_threshold"], window=hp["grokking_window"]
        )
        metrics[f"grok_epoch_{split}"] = None if index is None else int(curves["epoch"].iloc[index])
    if result.embedding is not None and np.isfinite(result.embedding).all():
        metrics.update(embedding_metrics(hp, result.embedding))
    return metrics, curves


def embedding_metrics(hp, embedding):
    """EV of the top PCs over the rows ev_rows(task, mode) selects (datasets.ev_rows says which and why)."""
    rows = {figure: ev_rows(hp["task"], len(embedding), hp["ev_rows"], figure) for figure in ("pc1_pc2", "cum_10")}
    pca = pca_summary(embedding[rows["pc1_pc2"]], standardize=False, k=10)
    return dict(
        ev_pc1=pca["ev_pc1"],
        ev_pc1_pc2=pca["ev_pc1_pc2"],
        ev_cum_10=pca_summary(embedding[rows["cum_10"]], standardize=False, k=10)["ev_cum_10"],
        effective_rank=pca["effective_rank"],
        participation_ratio=pca["participation_ratio"],
        ev_rows_pc1_pc2=len(rows["pc1_pc2"]),
        ev_rows_cum_10=len(rows["cum_10"]),
    )


def identity(hp):
    """A cell's identity when run by hand (the workflow passes its own)."""
    return {"dataset": hp["task"], "model": hp["model"], "head": hp["head_label"], "seed": hp["seed"]}


FAMILY = Family(
    name="toy",
    outputs=OUTPUTS,
    resolve=resolve,
    train=train_cell,
    identity=identity,
    placeholders=placeholders,
)
