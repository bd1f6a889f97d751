"""The vision family's defaults (the one place they live) and resolve(), which fills them into a cell's params.

A cell's params (what harmonic/vision/grid.py registers and the workflow passes) are training values plus the cell
fields backbone, head, seed, device and threads. resolve() fills both from the defaults below and rejects unknown
keys or bad values before any data or model is built; the grid calls it too, so a bad config value stops the run
before any job. The section-level values of `vision:` that every cell copies are in SECTION_DEFAULTS.

Training values (harmonic/vision/train.py reads them):
    optimizer adam|adamw|sgd, lr, weight_decay, momentum (sgd), nesterov
    schedule none|step|multistep|cosine, step_size, gamma, milestones, min_lr
    epochs, batch_size, eval_batch_size, patience (epochs without improvement before stopping; 0 = off),
    early_stop_on val_accuracy|train_loss (what must improve by more than min_delta), select best_val|final (which
    checkpoint the test_* metrics and the PCA use; test_final_* is always the final one)
    augment (flip + shift 4 + rotation, on the device), val_fraction, val_split_seed, pca_samples
    normalize (per-channel mean/std of the training set; false = ToTensor scaling to [0, 1] only, so blank pixels
    are 0), init_std (null = the module's init; else the head's weight ~ N(0, init_std), as both original MNIST
    weight studies), train_metric (false freezes a mahalanobis head's metric, the original's learn_cov=False)
    regularizer (null or a distance-family name) and regularizer_lambda: loss + lambda * R(features), default off
    amp auto|bf16|none (bf16 autocast for the backbone on CUDA; the head always runs in float32),
    compile (torch.compile on CUDA), channels_last auto|true|false, tensorboard, wandb, wandb_project,
    save_weights and weight_taus (the MNIST weight study, harmonic/vision/weights.py)
"""

from __future__ import annotations

import copy

from harmonic.heads import resolve_head_spec
from harmonic.settings import SETTINGS

DEFAULTS = {
    "optimizer": "adam",
    "lr": 3e-4,
    "weight_decay": 0.0,
    "momentum": 0.9,
    "nesterov": False,
    "schedule": "none",
    "step_size": 30,
    "gamma": 0.1,
    "milestones": [],
    "min_lr": 1e-6,
    "epochs": 3,
    "batch_size": 128,
    "eval_batch_size": 1024,
    "patience": 15,
    "early_stop_on": "val_accuracy",
    "min_delta": 0.0,
    "select": "best_val",
    "normalize": True,
    "init_std": None,
    "train_metric": True,
    "setting": "corrected",
    "augment": False,
    "val_fraction": 0.1,
    "val_split_seed": 0,
    "pca_samples": 2000,
    "regularizer": None,
    "regularizer_lambda": 0.0,
    "amp": "auto",
    "compile": False,
    "channels_last": "auto",
    "tensorboard": False,
    "wandb": False,
    "wandb_project": "harmonic-repro",
    "save_weights": False,
    "weight_taus": [0.001, 0.01, 0.1],
}


def resolve_training(hyper: dict) -> dict:
    """The training values over DEFAULTS; unknown keys or bad values raise ValueError naming them."""
    unknown = sorted(set(hyper) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown vision hyperparameters {unknown}; known: {sorted(DEFAULTS)}")
    hp = {**copy.deepcopy(DEFAULTS), **hyper}
    if hp["optimizer"] not in ("adam", "adamw", "sgd"):
        raise ValueError(f"optimizer must be adam, adamw or sgd, got {hp['optimizer']!r}")
    if hp["schedule"] not in ("none", "step", "multistep", "cosine"):
        raise ValueError(f"schedule must be none, step, multistep or cosine, got {hp['schedule']!r}")
    if hp["amp"] not in ("auto", "bf16", "none"):
        raise ValueError(f"amp must be auto, bf16 or none, got {hp['amp']!r}")
    if hp["early_stop_on"] not in ("val_accuracy", "train_loss"):
        raise ValueError(f"early_stop_on must be val_accuracy or train_loss, got {hp['early_stop_on']!r}")
    if hp["select"] not in ("best_val", "final"):
        raise ValueError(f"select must be best_val or final, got {hp['select']!r}")
    if hp["setting"] not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {hp['setting']!r}")
    if hp["init_std"] is not None and not float(hp["init_std"]) > 0:
        raise ValueError(f"init_std must be null or > 0, got {hp['init_std']!r}")
    if hp["save_weights"] and hp["normalize"]:
        # the score counts weights on always-zero pixels; normalised, those pixels arrive as -mean/std and the
        # harmonic centres are pulled there (Baek et al. used ToTensor inputs only)
        raise ValueError("save_weights (the weight study) needs normalize: false, so blank pixels arrive as 0")
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if int(hp[key]) < 1:
            raise ValueError(f"{key} must be >= 1, got {hp[key]}")
    return hp


# The fields of a cell's params that are not training values, and their defaults for a cell run by hand.
CELL_DEFAULTS = {"backbone": "mlp", "head": {"distance": "euclidean"}, "seed": 0, "device": "auto", "threads": 1}
# `vision:` section values copied into every cell (schemas/vision.schema.yaml lists them without defaults).
SECTION_DEFAULTS = {
    "settings": [DEFAULTS["setting"]],
    "threads": CELL_DEFAULTS["threads"],
    **{key: DEFAULTS[key] for key in ("val_fraction", "val_split_seed", "pca_samples", "weight_taus")},
}


def resolve_section(section):
    """The `vision:` section with SECTION_DEFAULTS filled in for the keys it leaves out (rules/common.smk
    register_family keeps it, so e.g. the cell jobs' threads are read from one place)."""
    return {**SECTION_DEFAULTS, **section}


def resolve(params: dict) -> dict:
    """A cell's params over the defaults: training values checked (resolve_training), the head spec resolved."""
    cell = {key: copy.deepcopy(params.get(key, value)) for key, value in CELL_DEFAULTS.items()}
    cell["head"] = resolve_head_spec(dict(cell["head"]))
    return {**resolve_training({k: v for k, v in params.items() if k not in CELL_DEFAULTS}), **cell}
