"""The MNIST weight study (Baek et al., Fig. 5): a single-layer 784 -> 10 classifier per head, its weights as images,
and a numeric interpretability score the papers lack.

The cell is an ordinary vision cell with backbone "linear" (flatten only) and `save_weights: true`; train.py calls
save_weight_study after selecting the checkpoint. Score: pixels that are zero in every training image carry no
signal, so an interpretable classifier should leave their weights near zero. For each tau we report
    interp_abs_tau<tau>   fraction of (class, always-zero pixel) weights with |w| < tau
    interp_rel_tau<tau>   the same with |w| divided by the median |w| over the other pixels (scale-free, because
                          CE weights and harmonic centres live on different scales)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def head_weight(head: torch.nn.Module) -> np.ndarray:
    """The (classes x features) matrix of a head: the CE baseline's linear weight or the harmonic centres."""
    return head.centres.detach().float().cpu().numpy()


def interpretability_scores(weight: np.ndarray, always_zero: np.ndarray, taus) -> dict[str, float]:
    """Fractions of weights on always-zero input pixels below each tau (absolute and relative)."""
    weight = np.abs(np.asarray(weight, np.float64))
    always_zero = np.asarray(always_zero, bool)
    if weight.shape[1] != always_zero.size:
        raise ValueError(f"weight has {weight.shape[1]} features but the pixel mask has {always_zero.size}")
    if not always_zero.any():
        raise ValueError("no pixel is zero in every training image; the score is undefined")
    dead = weight[:, always_zero]
    live = weight[:, ~always_zero]
    scale = float(np.median(live)) if live.size else 1.0
    scores = {"always_zero_pixels": int(always_zero.sum())}
    for tau in taus:
        scores[f"interp_abs_tau{tau:g}"] = float((dead < tau).mean())
        scores[f"interp_rel_tau{tau:g}"] = float((dead / max(scale, 1e-12) < tau).mean())
    return scores


def save_weight_study(head, always_zero, image_shape, taus, out_dir) -> dict[str, float]:
    """Write weights.npz (class weight images + the always-zero mask) and return the interpretability scores."""
    weight = head_weight(head)
    out_dir = Path(out_dir)
    np.savez(
        out_dir / "weights.npz",
        weight=weight.reshape(weight.shape[0], *image_shape),
        always_zero=np.asarray(always_zero, bool).reshape(image_shape),
    )
    if not np.any(always_zero):  # e.g. the synthetic stand-in: no pixel is always zero, so no score
        return {"always_zero_pixels": 0}
    return interpretability_scores(weight, always_zero, taus)
