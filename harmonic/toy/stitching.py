"""Model stitching: does model A's representation carry what model B's last part needs, up to an affine map?

For a trained front model A and back model B (two toy cells) at the cut point `head_input` (the vector the head
reads: for the MLP the body's output, for the transformers the last position's final hidden state):
    fit     an affine map h_B ~ [h_A, 1] W by least squares on training inputs only: inputs in the train split of
            both models (each cell draws its own split from its seed);
    stitch  B's head on the mapped h_A, evaluated on test inputs: inputs in neither model's train split, from
            both test splits (so no model and no map has seen them);
    report  stitched accuracy, both originals' accuracy on the same inputs, the stitching penalty (B's accuracy
            minus the stitched one: B's head answers, as in Bansal et al. 2021), the map's R^2 on the fit inputs,
            and linear CKA (Kornblith et al. 2019) between h_A and h_B on the fit inputs.

Partners of a model (stitching_partners): the cells of the same setting, study and dataset that differ in exactly
one of seed, head or model. One stitch job per front model reads its partners' files, so a retrained model reruns
only the stitches that use it.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harmonic.toy.datasets import ToyDataset, make_dataset
from harmonic.toy.models import build_from_hp

CUTS = ("head_input",)
PARTNER_KINDS = ("seed", "head", "model")  # which one identity part a partner differs in
PAIR_FIELDS = ("front_acc", "back_acc", "stitched_acc", "penalty", "fit_r2", "cka", "n_fit", "n_eval")


@dataclass
class Trained:
    """A trained toy model with the hyperparameters and the data split it was trained on."""

    hp: dict
    model: torch.nn.Module
    data: ToyDataset


def load_trained(cell_dir):
    """Rebuild a cell's model from its metrics.json (hyperparameters) and model.pt (torch.load, weights only)."""
    cell_dir = Path(cell_dir)
    record = json.loads((cell_dir / "metrics.json").read_text())
    if record["status"] != "ok":
        raise ValueError(f"{cell_dir}: the model's cell has status {record['status']!r}, nothing to stitch")
    hp = record["hyperparameters"]
    data = make_dataset(
        hp["task"], seed=hp["seed"], split=hp["split"], n_samples=hp["n_samples"], train_fraction=hp["train_fraction"]
    )
    model = build_from_hp(hp, data.vocab_size, data.x_train.shape[1])
    state = torch.load(cell_dir / "model.pt", weights_only=True)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied parameters appear once, as in the saved state
            p.copy_(state[name])
    return Trained(hp, model.eval(), data)


@torch.no_grad()
def head_input(model, tokens):
    """The representation at the cut point: what the model's head reads."""
    captured = []
    handle = model.head.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        model(torch.as_tensor(tokens))
    finally:
        handle.remove()
    return captured[0].double()


def _inputs(x):
    return {tuple(row) for row in x.tolist()}


def stitch_inputs(a, b):
    """(fit inputs, eval inputs, eval labels): inputs both models trained on; inputs neither did (from both test
    splits, duplicates once)."""
    train_b = _inputs(b.x_train)
    fit = sorted(_inputs(a.x_train) & train_b)
    seen = _inputs(a.x_train) | train_b
    rows = np.concatenate([np.c_[a.x_test, a.y_test], np.c_[b.x_test, b.y_test]])
    held_out = sorted({tuple(row) for row in rows.tolist() if tuple(row[:-1]) not in seen})
    width = a.x_train.shape[1]
    fit_x = np.array(fit, dtype=np.int64).reshape(-1, width)
    held = np.array(held_out, dtype=np.int64).reshape(-1, width + 1)
    return fit_x, held[:, :-1], held[:, -1]


def fit_affine(source, target):
    """Least-squares affine map source -> target (float64): (W with the bias as its last row, R^2 of the fit)."""
    design = torch.cat([source, torch.ones(len(source), 1, dtype=source.dtype)], dim=1)
    weight = torch.linalg.lstsq(design, target, driver="gelsd").solution
    residual = ((target - design @ weight) ** 2).sum()
    total = ((target - target.mean(0)) ** 2).sum()
    return weight, float(1 - residual / total) if total > 0 else math.nan


def linear_cka(x, y):
    """Linear centred kernel alignment of two representations of the same inputs (rows)."""
    x, y = x - x.mean(0), y - y.mean(0)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norm) if norm > 0 else math.nan


@torch.no_grad()
def _accuracy(logits, labels):
    return float((logits.argmax(-1) == torch.as_tensor(labels)).double().mean()) if len(labels) else math.nan


@torch.no_grad()
def stitch_pair(front, back):
    """Stitch front's representation into back's head; a dict of PAIR_FIELDS."""
    if front.hp["task"] != back.hp["task"]:
        raise ValueError(f"cannot stitch across tasks ({front.hp['task']} -> {back.hp['task']})")
    fit_x, eval_x, eval_y = stitch_inputs(front.data, back.data)
    if len(fit_x) < 2:
        raise ValueError(f"only {len(fit_x)} inputs are in both train splits: too few to fit a map")
    h_front, h_back = head_input(front.model, fit_x), head_input(back.model, fit_x)
    weight, r2 = fit_affine(h_front, h_back)
    out = dict(fit_r2=r2, cka=linear_cka(h_front, h_back), n_fit=len(fit_x), n_eval=len(eval_x))
    if len(eval_x):
        mapped = torch.cat([head_input(front.model, eval_x), torch.ones(len(eval_x), 1, dtype=torch.float64)], 1)
        stitched = back.model.head((mapped @ weight).to(torch.get_default_dtype()))
        tokens = torch.as_tensor(eval_x)
        out.update(
            front_acc=_accuracy(front.model(tokens), eval_y),
            back_acc=_accuracy(back.model(tokens), eval_y),
            stitched_acc=_accuracy(stitched, eval_y),
        )
    else:
        out.update(front_acc=math.nan, back_acc=math.nan, stitched_acc=math.nan)
    out["penalty"] = out["back_acc"] - out["stitched_acc"]
    return {key: out[key] for key in PAIR_FIELDS}


def stitching_partners(cell, cells, kinds=PARTNER_KINDS):
    """(kind, partner cell) for every cell of `cells` of the same setting, study and dataset as `cell` that differs
    from it in exactly one of seed, head or model, for the kinds asked."""
    same = ("setting", "study", "dataset")
    out = []
    for other in cells:
        if any(other[key] != cell[key] for key in same):
            continue
        differ = [kind for kind in PARTNER_KINDS if str(other[kind]) != str(cell[kind])]
        if len(differ) == 1 and differ[0] in kinds:
            out.append((differ[0], other))
    return out


def summary_metrics(pairs):
    """Per partner kind the mean of each pair field over the model's partners: stitch_<field>_<kind> columns, and
    stitch_partners_<kind>. `pairs`: dicts with `kind` and PAIR_FIELDS."""
    names = dict(stitched_acc="acc", penalty="penalty", fit_r2="r2", cka="cka", front_acc="front_acc")
    metrics = {}
    for kind in PARTNER_KINDS:
        rows = [p for p in pairs if p["kind"] == kind]
        if not rows:
            continue
        metrics[f"stitch_partners_{kind}"] = len(rows)
        for field, name in names.items():
            values = np.array([row[field] for row in rows], dtype=float)
            finite = values[np.isfinite(values)]
            metrics[f"stitch_{name}_{kind}"] = float(finite.mean()) if len(finite) else None
    return metrics
