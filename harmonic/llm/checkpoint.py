"""Resumable training: the full state of a run in ckpt.pt, written atomically after each evaluation.

A checkpoint holds the model, the optimizer, every RNG, the loop state (step, curves, gradient statistics, emissions
so far) and the fingerprint of the hyperparameters that decide the trajectory; it is resumed only under the same
fingerprint. Batches are a pure function of (seed, step) (data.py), so a resumed run continues on exactly the same
data and, on CPU, ends bit-identical to an uninterrupted one.
"""

import random
import sys
from pathlib import Path

import numpy as np
import torch

from harmonic.runs import atomic_output

CHECKPOINT_NAME = "ckpt.pt"


def fresh_state() -> dict:
    """The loop state of a run that starts at step 0."""
    return {"step": 0, "curves": [], "stats": [], "grad_norms": [], "emissions": {}, "train_time": 0.0}


def rng_state() -> dict:
    """Every RNG as plain lists and tensors, so torch.load(weights_only=True) can read it back."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def add_emissions(before: dict, now: dict) -> dict:
    """Cumulative emissions across restarts: numbers add (power figures, *_w, do not), descriptive fields come from
    the latest part."""
    total = dict(now)
    for key, value in before.items():
        if isinstance(value, (int, float)) and isinstance(now.get(key), (int, float)) and not key.endswith("_w"):
            total[key] = value + now[key]
    return total


def load_checkpoint(path: Path, model, optimizer, fingerprint: str, device: torch.device) -> dict | None:
    """The loop state of the checkpoint at `path` after loading model, optimizer and RNGs from it; None when there is
    none or it belongs to other hyperparameters (never continue from those)."""
    if not path.exists():
        return None
    ckpt = torch.load(path, map_location=device, weights_only=True)
    if ckpt.get("fingerprint") != fingerprint:
        print(f"{path} belongs to other hyperparameters; starting from step 0", file=sys.stderr)
        return None
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    return ckpt["state"]


def save_checkpoint(path: Path, model, optimizer, step: int, state: dict, emissions_so_far: dict, fingerprint: str):
    """Atomic (temp file + rename): a kill while saving leaves the previous checkpoint intact.

    The checkpoint carries the emissions up to now; a resumed run's meter starts from zero and adds to them (the
    energy spent between the last checkpoint and the kill is not counted: that process never reported it)."""
    ckpt = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "fingerprint": fingerprint,
        "state": {**state, "step": step, "emissions": emissions_so_far},
    }
    with atomic_output(path) as tmp:
        torch.save(ckpt, tmp)
