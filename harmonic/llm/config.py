"""One language-model cell's hyperparameters: the defaults, their check, and what follows from them.

    cfg = resolve_config({"model": "gpt", "data_dir": "data/shakespeare"})   # defaults filled, checked before work

The grid (DAG-parse time), the memory probe and the training loop all take their values from here, so this module
imports nothing of the training code. What follows from a resolved config: the gradient accumulation for a world
size, the learning rate of a step, the optimiser, and the fingerprint that decides whether a checkpoint resumes.
"""

import hashlib
import json
import math

import torch

from harmonic.cell import EMISSIONS_DEFAULTS

DEFAULTS = {
    "model": "gpt",
    "model_args": {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64},
    "head": {"distance": "baseline"},
    "seed": 0,
    "data_dir": "data/shakespeare",
    "vocab_limit": None,  # tiny CPU configs: keep the most frequent ids, the rest -> <unk> (data.TokenBins)
    "tokens_per_step": 512,
    "micro_batch": 8,  # sequences per process per micro step; "auto" = take it from the memory probe
    "max_steps": 100,
    "warmup_steps": 10,
    "lr": 1e-3,
    "min_lr": 1e-4,
    "weight_decay": 0.1,
    "decay_embeddings": False,  # both papers' code keeps the embedding (= the tied centres) out of weight decay
    "betas": [0.9, 0.95],
    "grad_clip": 1.0,
    "label_smoothing": 0.0,
    "prob_floor": 0.0,  # alpha: train on -log((p_y + alpha/V) / (1 + alpha)), as both original codes (0.01)
    "eval_interval": 50,
    "eval_iters": 4,
    "stats_interval": 10,
    "mask_probability": 0.15,
    "device": "auto",
    "dtype": "bfloat16",  # autocast dtype on CUDA; CPU always runs float32
    "compile": False,
    "head_kernel": "auto",  # the loss: "auto" (harmonic.kernels on CUDA when it pays), "fused" or "reference"
    "tensorboard": True,
    "wandb": {"enabled": False, "project": "harmonic-repro", "mode": "offline"},
    "emissions": EMISSIONS_DEFAULTS,  # the meter's settings (the cell contract's, recorded with the cell)
    "analysis": {"enabled": True, "pca_components": 5, "logit_rows": 256},
    "keep_checkpoint": False,  # keep ckpt.pt (model + optimizer) after the cell finished
}
NESTED = ("model_args", "wandb", "emissions", "analysis")

# The `llm:` config section's optional keys (schemas/llm.schema.yaml repeats none of these); a cell's own values come
# from DEFAULTS above. A study's per_head_optimizer defaults to no setting.
SECTION_DEFAULTS = {
    "settings": ["corrected"],
    "vocab_limit": None,
    "prepare_workers": 1,
    "threads": 2,  # CPU threads of a cell job (Snakemake's OMP_NUM_THREADS, which torch follows)
    "overrides": [],
    "tensorboard": DEFAULTS["tensorboard"],
    "wandb": {},
    "analysis": {},
}  # dicts whose keys are filled one by one

# The config's head_kernel -> HarmonicHead.loss(fused=...): "auto" lets the head decide (the fused kernel on CUDA for
# language-model sizes), "fused" / "reference" force one path (docs/performance.md compares them).
HEAD_KERNELS = {"auto": "auto", "fused": True, "reference": False}

# Values that do not change the trajectory: a checkpoint resumes whatever they are (micro_batch is a memory choice).
NOT_FINGERPRINTED = ("micro_batch", "tensorboard", "wandb", "emissions", "device", "keep_checkpoint")


def resolve_section(llm: dict) -> dict:
    """The `llm:` section with SECTION_DEFAULTS filled in for the keys it leaves out."""
    return {**SECTION_DEFAULTS, **llm}


def block_size(cfg: dict) -> int:
    return cfg["model_args"].get("block_size", 1024)


def resolve_config(cfg: dict) -> dict:
    """Defaults filled (nested dicts too) and every derived quantity checked before any work starts."""
    out = {**DEFAULTS, **cfg}
    for key in NESTED:
        out[key] = {**DEFAULTS[key], **cfg.get(key, {})}
    if out["tokens_per_step"] % block_size(out):
        raise ValueError(
            f"tokens_per_step {out['tokens_per_step']} is not a multiple of block_size {block_size(out)}"
        )
    for key in ("max_steps", "eval_interval", "eval_iters", "stats_interval"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {out[key]!r}")
    if out["warmup_steps"] > out["max_steps"]:
        raise ValueError(f"warmup_steps {out['warmup_steps']} > max_steps {out['max_steps']}")
    if out["micro_batch"] != "auto" and (not isinstance(out["micro_batch"], int) or out["micro_batch"] < 1):
        raise ValueError(f"micro_batch must be a positive integer or 'auto', got {out['micro_batch']!r}")
    if out["dtype"] not in ("bfloat16", "float16", "float32"):
        raise ValueError(f"dtype must be bfloat16, float16 or float32, got {out['dtype']!r}")
    if not 0.0 <= out["label_smoothing"] < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {out['label_smoothing']!r}")
    if not 0.0 <= out["prob_floor"] < float("inf"):
        raise ValueError(f"prob_floor must be a finite number >= 0, got {out['prob_floor']!r}")
    if out["head_kernel"] not in HEAD_KERNELS:
        raise ValueError(f"head_kernel must be one of {', '.join(HEAD_KERNELS)}, got {out['head_kernel']!r}")
    return out


def config_fingerprint(cfg: dict) -> str:
    """Hash of what decides the trajectory; a checkpoint is resumed only under the same values."""
    keep = {k: v for k, v in cfg.items() if k not in NOT_FINGERPRINTED}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


def accumulation(cfg: dict, micro_batch: int, world_size: int) -> int:
    """Micro steps per optimizer step so that tokens per step stay as configured for any world size."""
    sequences = cfg["tokens_per_step"] // block_size(cfg)
    if sequences % (micro_batch * world_size):
        raise ValueError(
            f"{sequences} sequences per step ({cfg['tokens_per_step']} tokens) do not split into micro-batches of "
            f"{micro_batch} on {world_size} process(es); choose tokens_per_step or micro_batch to divide evenly"
        )
    return sequences // (micro_batch * world_size)


def lr_at(step: int, cfg: dict) -> float:
    """Linear warmup to lr, then cosine to min_lr at max_steps."""
    if step < cfg["warmup_steps"]:
        return cfg["lr"] * (step + 1) / cfg["warmup_steps"]
    progress = (step - cfg["warmup_steps"]) / max(1, cfg["max_steps"] - cfg["warmup_steps"])
    return cfg["min_lr"] + 0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * (cfg["lr"] - cfg["min_lr"])


def make_optimizer(model: torch.nn.Module, cfg: dict, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only: biases and norm gains never decay, and the embedding tables
    (the token embedding IS the tied head's centres) decay only with decay_embeddings. Both papers' code (nanoGPT of
    2022) kept nn.Embedding weights out of decay; today's nanoGPT decays every matrix, embeddings included."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    params = [p for p in model.parameters() if p.requires_grad]  # a tied weight appears once
    decays = [p.dim() >= 2 and (cfg["decay_embeddings"] or id(p) not in embeddings) for p in params]
    decay = [p for p, d in zip(params, decays) if d]
    no_decay = [p for p, d in zip(params, decays) if not d]
    groups = [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), fused=fused)
