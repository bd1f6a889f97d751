"""Baek et al.'s two-point toy (Fig. 1): one 2 x 2 layer classifies the fixed points (1, 1) and (-1, -1).

Harmonic loss has a finite optimum, the centres sitting on the points; cross-entropy does not, so its weights keep
growing. The original is toy_points.ipynb (cells 2 and 7): Adam lr 1e-2, 10,000 full-batch steps, seed 0, the CE
layer without bias, the harmonic layer a DistLayer on d^2 (exponent 2 on d) with eps 1e-6.
"""

import numpy as np
import torch
import torch.nn.functional as F

from harmonic.toy.models import effective_head, make_head

POINTS = ((1.0, 1.0), (-1.0, -1.0))
CURVE_EVERY = 10  # steps between two rows of curves.csv


def train_two_points(hp, log=print):
    """Train the layer; returns (curves, final weight, metrics). Metrics: the final loss and accuracy, the largest
    distance of a class's weight row to its own point, and the weight norm at the end, at mid-run, and its growth
    over the second half (about 0 when training has converged, > 0 while the weights still grow)."""
    torch.manual_seed(hp["seed"])
    x = torch.tensor(POINTS)
    y = torch.arange(len(POINTS))
    head = make_head(effective_head(hp["head"], hp["distance_power"]), 2, len(POINTS))
    optimizer = torch.optim.Adam(head.parameters(), lr=hp["lr"])
    curves, mid_norm = [], None
    for step in range(1, hp["steps"] + 1):
        loss = F.cross_entropy(head(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == hp["steps"] // 2:
            mid_norm = head.centres.detach().norm().item()
        if step % CURVE_EVERY == 0 or step == hp["steps"]:
            curves.append(dict(step=step, loss=loss.item(), weight_norm=head.centres.detach().norm().item()))
    with torch.no_grad():
        logits = head(x)
        weight = head.centres.detach().clone()
        metrics = dict(
            final_loss=F.cross_entropy(logits, y).item(),
            final_train_acc=(logits.argmax(-1) == y).float().mean().item(),
            centre_distance_final=(weight - x).norm(dim=1).max().item(),
            weight_norm_final=weight.norm().item(),
            weight_norm_mid=mid_norm if mid_norm is not None else float("nan"),
        )
    metrics["weight_norm_growth"] = metrics["weight_norm_final"] - metrics["weight_norm_mid"]
    log(f"two points: {metrics}")
    return curves, weight.numpy().astype(np.float32), metrics
