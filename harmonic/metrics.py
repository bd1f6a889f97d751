"""Metrics shared by every experiment family: PCA structure, effective rank, grokking epochs, classification scores.

Definitions follow the papers (reference/papers.md): explained variance (EV) of the top principal components,
number of PCs for 90 % / 95 % of the variance, effective rank exp(H(p)) of the normalised spectrum, participation
ratio (sum lambda)^2 / sum lambda^2, and the grokking epoch (first epoch whose accuracy stays above a threshold for a
window of consecutive epochs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def explained_variance_ratio(X: Any, standardize: bool = False) -> np.ndarray:
    """EV ratio of every principal component of the rows of X (samples x features), largest first."""
    X = _as_numpy(X)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"PCA needs a 2-D array with at least 2 rows, got shape {X.shape}")
    X = X - X.mean(axis=0, keepdims=True)
    if standardize:
        std = X.std(axis=0, ddof=1, keepdims=True)
        X = X / np.where(std > 0, std, 1.0)  # constant features stay 0 instead of becoming NaN
    singular = np.linalg.svd(X, compute_uv=False)
    variance = singular**2
    total = variance.sum()
    if total <= 0:
        return np.zeros_like(variance)
    return variance / total


def spectrum_summary(variance: np.ndarray) -> dict[str, float]:
    """Effective rank and participation ratio of a non-negative spectrum (eigenvalues or squared singular values)."""
    variance = np.asarray(variance, dtype=np.float64)
    total = variance.sum()
    if total <= 0:
        return {"effective_rank": 0.0, "participation_ratio": 0.0}
    p = variance / total
    nonzero = p[p > 0]
    entropy = -(nonzero * np.log(nonzero)).sum()
    return {
        "effective_rank": float(np.exp(entropy)),
        "participation_ratio": float(total**2 / (variance**2).sum()),
    }


def pca_summary(X: Any, standardize: bool = True, k: int = 10) -> dict[str, Any]:
    """PCA numbers the papers report, from one feature matrix (samples x features)."""
    ratio = explained_variance_ratio(X, standardize=standardize)
    cumulative = np.cumsum(ratio)

    def pcs_for(fraction: float) -> int:
        return int(np.searchsorted(cumulative, fraction - 1e-12) + 1)

    summary = {
        "ev": [float(v) for v in ratio[:k]],
        "ev_pc1": float(ratio[0]),
        "ev_pc1_pc2": float(cumulative[min(1, len(cumulative) - 1)]),
        f"ev_cum_{k}": float(cumulative[min(k, len(cumulative)) - 1]),
        "n_pcs_90": pcs_for(0.90),
        "n_pcs_95": pcs_for(0.95),
    }
    summary.update(spectrum_summary(ratio))
    return summary


def effective_rank(matrix: Any) -> float:
    """exp(entropy) of the normalised singular values (Roy & Vetterli), a size-free measure of how many directions
    a weight or logit matrix uses."""
    singular = np.linalg.svd(_as_numpy(matrix), compute_uv=False)
    total = singular.sum()
    if total <= 0:
        return 0.0
    p = singular / total
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def grokking_epoch(accuracy: Sequence[float], threshold: float = 0.9, window: int = 20) -> int | None:
    """First epoch (0-based index into `accuracy`) from which accuracy > threshold holds for `window` epochs.

    None means "never": the run ended before any such stretch, which tables and plots must show as such.
    """
    run = 0
    for epoch, value in enumerate(accuracy):
        run = run + 1 if value is not None and value > threshold else 0
        if run == window:
            return epoch - window + 1
    return None


def classification_scores(y_true: Any, y_pred: Any, num_classes: int) -> dict[str, float]:
    """Accuracy and macro precision / recall / F1 (classes absent from both truth and prediction are skipped,
    as sklearn does with labels=present classes; a class never predicted has precision 0)."""
    y_true = np.asarray(_as_numpy(y_true), dtype=np.int64)
    y_pred = np.asarray(_as_numpy(y_pred), dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {y_true.shape} vs {y_pred.shape}")
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    actual = confusion.sum(axis=1).astype(np.float64)
    present = (predicted + actual) > 0
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "accuracy": float(tp.sum() / max(len(y_true), 1)),
        "precision_macro": float(precision[present].mean()) if present.any() else 0.0,
        "recall_macro": float(recall[present].mean()) if present.any() else 0.0,
        "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
    }
