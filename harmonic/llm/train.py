"""Training loop for one language-model cell (nanoGPT-style, readable top to bottom).

    cfg = resolve_config({...})            # defaults filled, checked before any work
    result = train(cfg, "results/llm/corrected/shakespeare/gpt/euclidean/seed0")

AdamW (fused on CUDA), linear warmup + cosine decay, gradient clipping, gradient accumulation so that the tokens per
step are fixed by the config whatever the number of processes, bf16 autocast on CUDA, optional torch.compile, DDP
when started by torchrun (NCCL on GPUs, gloo on CPU).

Resumable: after each evaluation the full state (model, optimizer, step, RNG states, curves, gradient statistics,
emissions so far) is written atomically to ckpt.pt. Batches are a pure function of (seed, step) (see data.py), so a
job killed by SIGTERM and started again continues on exactly the same data and, on CPU, ends bit-identical to an
uninterrupted run. A NaN/Inf loss or gradient norm stops the run with status "diverged" and the step.
"""

import contextlib
import csv
import math
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from harmonic.emissions import EmissionsMeter
from harmonic.llm.data import TRAIN_EVAL_STREAM, TRAIN_STREAM, VAL_STREAM, BatchSource, TokenBins
from harmonic.llm.models import HEAD_KERNELS, build_model, lm_head_spec, special_tokens
from harmonic.runs import atomic_output, resolve_device, seed_everything

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
    "emissions": {"enabled": True, "country_iso_code": "USA", "measure_power_secs": 15},
    "analysis": {"enabled": True, "pca_components": 5, "logit_rows": 256},
    "keep_checkpoint": False,  # keep ckpt.pt (model + optimizer) after the cell finished
}

# Dense bf16 tensor-core peak per GPU (FLOP/s), matched against torch.cuda.get_device_name().
PEAK_FLOPS = [
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),
    ("T4", 65e12),
]


class Interrupted(RuntimeError):
    """Raised by the test hook that simulates a scheduler killing the job."""


def resolve_config(cfg: dict) -> dict:
    """Defaults filled (nested dicts too) and every derived quantity checked before any work starts."""
    out = {**DEFAULTS, **cfg}
    for key in ("model_args", "wandb", "emissions", "analysis"):
        out[key] = {**DEFAULTS[key], **cfg.get(key, {})}
    block = out["model_args"].get("block_size", 1024)
    if out["tokens_per_step"] % block:
        raise ValueError(f"tokens_per_step {out['tokens_per_step']} is not a multiple of block_size {block}")
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
    """Hash of what decides the trajectory; a checkpoint is resumed only under the same values. The micro-batch
    (a memory choice) and logging switches may differ between attempts."""
    import hashlib
    import json

    keep = {
        k: v
        for k, v in cfg.items()
        if k not in ("micro_batch", "tensorboard", "wandb", "emissions", "device", "keep_checkpoint")
    }
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


def accumulation(cfg: dict, micro_batch: int, world_size: int) -> int:
    """Micro steps per optimizer step so that tokens per step stay as configured for any world size."""
    sequences = cfg["tokens_per_step"] // cfg["model_args"].get("block_size", 1024)
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


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_FLOPS if key in name), None)


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


def setup_distributed(device_spec: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); initialises the process group when run under torchrun."""
    if "RANK" not in os.environ:
        return 0, 1, resolve_device(device_spec)
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    device = resolve_device(device_spec)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _rng_state() -> dict:
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


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@torch.no_grad()
def evaluate(model, source, cfg, device, autocast, rank, world, rows_per_chunk=4096) -> dict:
    """Mean loss, perplexity and accuracy on fixed batches of train and val (the same batches at every eval)."""
    model.eval()
    out = {}
    for split, stream in (("train", TRAIN_EVAL_STREAM), ("val", VAL_STREAM)):
        totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
        for i in range(rank, cfg["eval_iters"], world):
            batch = _to(source.micro(split, stream, 0, i, cfg["eval_iters"]), device)
            with autocast:
                x, y = model.labelled_hidden(batch)
            for start in range(0, len(y), rows_per_chunk):
                with autocast:
                    logits = model.head(x[start : start + rows_per_chunk]).float()
                target = y[start : start + rows_per_chunk]
                totals[0] += F.cross_entropy(logits, target, reduction="sum").double()
                totals[1] += (logits.argmax(-1) == target).sum()
                totals[2] += len(target)
        if world > 1:
            dist.all_reduce(totals)
        loss = (totals[0] / totals[2]).item()
        out[f"{split}_loss"] = loss
        out[f"{split}_ppl"] = math.exp(loss) if loss < 700 else float("inf")
        out[f"{split}_accuracy"] = (totals[1] / totals[2]).item()
    model.train()
    return out


@torch.no_grad()
def optimizer_norms(model, optimizer) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    norm = lambda ts: torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.float()) for t in ts])).item()  # noqa: E731
    m1 = [optimizer.state[p]["exp_avg"] for p in params if p in optimizer.state]
    m2 = [optimizer.state[p]["exp_avg_sq"] for p in params if p in optimizer.state]
    return {
        "param_norm": norm(params),
        "adam_m_norm": norm(m1) if m1 else 0.0,
        "adam_v_norm": norm(m2) if m2 else 0.0,
    }


def grad_stability(grad_norms: list[float], clip: float) -> dict:
    """Summary of the pre-clip gradient norms of a run ('gradient stability' in the non-Euclidean paper)."""
    g = np.asarray(grad_norms, dtype=float)
    g = g[np.isfinite(g)]
    if len(g) == 0:
        return {}
    median = np.median(g)
    return {
        "grad_norm_mean": float(g.mean()),
        "grad_norm_std": float(g.std()),
        "grad_norm_cv": float(g.std() / g.mean()) if g.mean() > 0 else None,
        "grad_norm_max": float(g.max()),
        "grad_norm_p95": float(np.percentile(g, 95)),
        "grad_norm_median": float(median),
        "clip_rate": float((g > clip).mean()),
        "grad_spike_rate": float((g > 3 * median).mean()),
    }


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _add_emissions(before: dict, now: dict) -> dict:
    """Cumulative emissions across restarts: numbers add, descriptive fields come from the latest part."""
    total = dict(now)
    for key, value in before.items():
        if isinstance(value, (int, float)) and isinstance(now.get(key), (int, float)) and not key.endswith("_w"):
            total[key] = value + now[key]
    return total


class _Loggers:
    """TensorBoard event files (local) and optional Weights & Biases (offline unless configured)."""

    def __init__(self, cfg, out_dir, enabled):
        self.tb = self.wandb = None
        if not enabled:
            return
        if cfg["tensorboard"]:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tb"))
            except ImportError:
                print("tensorboard not installed; no event files written", file=sys.stderr)
        if cfg["wandb"]["enabled"]:
            import wandb

            self.wandb = wandb.init(
                project=cfg["wandb"]["project"],
                mode=cfg["wandb"]["mode"],
                dir=str(out_dir),
                name=str(out_dir),
                config={k: v for k, v in cfg.items() if k != "wandb"},
                resume="allow",
            )

    def log(self, values: dict, step: int):
        if self.tb:
            for key, value in values.items():
                if isinstance(value, (int, float)) and value is not None:
                    self.tb.add_scalar(key, value, step)
        if self.wandb:
            self.wandb.log(values, step=step)

    def close(self):
        if self.tb:
            self.tb.close()
        if self.wandb:
            self.wandb.finish()


def train(
    cfg: dict,
    out_dir: str | os.PathLike,
    micro_batch: int | None = None,
    _interrupt_at: int | None = None,
    _nan_at: int | None = None,
) -> dict:
    """Train one cell; returns {"status", "metrics", "hyperparameters", "emissions", "diverged_at"} on rank 0.

    `_interrupt_at` (tests) raises Interrupted just before that training step, as if the job were killed there;
    `_nan_at` (tests) turns the loss at that step into NaN to exercise the divergence path.
    """
    cfg = resolve_config(cfg)
    out_dir = Path(out_dir)
    rank, world, device = setup_distributed(cfg["device"])
    master = rank == 0
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
    if micro_batch is None and cfg["micro_batch"] == "auto":  # no probe result given: probe here
        from harmonic.llm.probe import probe_micro_batch

        micro_batch = probe_micro_batch({**cfg, "device": str(device)}, world)["micro_batch"]
    micro_batch = int(micro_batch or cfg["micro_batch"])
    accum = accumulation(cfg, micro_batch, world)
    bins = TokenBins(cfg["data_dir"], vocab_limit=cfg["vocab_limit"])
    block = cfg["model_args"].get("block_size", 1024)
    special = special_tokens(bins.vocab_size) | {"mask_probability": cfg["mask_probability"]}
    source = BatchSource(bins, cfg["model"], block, micro_batch, cfg["seed"], special)

    seed_everything(cfg["seed"])
    model = build_model(
        cfg["model"],
        cfg["model_args"],
        cfg["head"],
        bins.vocab_size,
        cfg["head_kernel"],
        label_smoothing=cfg["label_smoothing"],
        prob_floor=cfg["prob_floor"],
    ).to(device)
    optimizer = make_optimizer(model, cfg, device)
    use_amp = device.type == "cuda" and cfg["dtype"] != "float32"
    autocast = torch.autocast(device.type, dtype=getattr(torch, cfg["dtype"]), enabled=use_amp)
    scaler = torch.amp.GradScaler(enabled=use_amp and cfg["dtype"] == "float16")

    # ---- resume
    ckpt_path = out_dir / "ckpt.pt"
    state = {"step": 0, "curves": [], "stats": [], "grad_norms": [], "emissions": {}, "train_time": 0.0}
    resumed = ckpt_path.exists()
    fingerprint = config_fingerprint(cfg)
    if resumed:
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        resumed = ckpt.get("fingerprint") == fingerprint
        if not resumed:  # a checkpoint of other hyperparameters: never continue from it
            print(f"{ckpt_path} belongs to other hyperparameters; starting from step 0", file=sys.stderr)
    if resumed:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        _set_rng_state(ckpt["rng"])
        state = ckpt["state"]
    start_step = state["step"]

    raw_model = model
    if cfg["compile"]:
        model = torch.compile(model)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    eval_model = raw_model  # eval needs labelled_hidden / head, and no DDP synchronisation

    hyperparameters = {
        **{k: v for k, v in cfg.items() if k not in ("wandb",)},
        "head": lm_head_spec(cfg["head"], cfg["model_args"].get("n_embd", 768)),
        "harmonic_exponent": lm_head_spec(cfg["head"], cfg["model_args"].get("n_embd", 768)).get("n"),
        "micro_batch": micro_batch,
        "grad_accumulation": accum,
        "world_size": world,
        "n_params": sum(p.numel() for p in raw_model.parameters()),
        "vocab_rows": raw_model.body.embedding.num_embeddings,
    }
    flops_per_token = raw_model.flops_per_token()
    peak = peak_flops(device)
    loggers = _Loggers(cfg, out_dir, master)
    emissions_cfg = cfg["emissions"]
    meter = (
        EmissionsMeter(
            out_dir / "emissions.csv",
            country_iso_code=emissions_cfg["country_iso_code"],
            measure_power_secs=emissions_cfg["measure_power_secs"],
            enabled=emissions_cfg["enabled"],
        )
        if master
        else contextlib.nullcontext()
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    previous_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    diverged_at = None
    step = start_step
    try:
        with meter:
            interval_start, interval_steps = time.perf_counter(), 0
            while True:
                # ---- evaluate + checkpoint (skipped right after a resume: the checkpoint holds that eval)
                if (step % cfg["eval_interval"] == 0 or step == cfg["max_steps"]) and not (
                    resumed and step == start_step
                ):
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    elapsed = time.perf_counter() - interval_start
                    state["train_time"] += elapsed
                    row = {"step": step, "tokens": step * cfg["tokens_per_step"], "lr": lr_at(max(step - 1, 0), cfg)}
                    row |= evaluate(eval_model, source, cfg, device, autocast, rank, world)
                    tokens_per_s = interval_steps * cfg["tokens_per_step"] / elapsed if interval_steps else None
                    row["tokens_per_s"] = tokens_per_s
                    row["mfu"] = flops_per_token * tokens_per_s / (peak * world) if peak and tokens_per_s else None
                    if master:
                        emissions_now = _add_emissions(state["emissions"], meter.flush())
                        row["emissions_kg"] = emissions_now.get("emissions_kg")
                        row["energy_kwh"] = emissions_now.get("energy_kwh")
                    state["curves"].append(row)
                    if master:
                        loggers.log({f"eval/{k}": v for k, v in row.items() if k != "step"}, step)
                        _write_csv(out_dir / "curves.csv", state["curves"])
                        _write_csv(out_dir / "grad_stats.csv", state["stats"])
                        _save_checkpoint(ckpt_path, raw_model, optimizer, step, state, emissions_now, fingerprint)
                        print(f"step {step}: train {row['train_loss']:.4f} val {row['val_loss']:.4f}", flush=True)
                    interval_start, interval_steps = time.perf_counter(), 0
                if step >= cfg["max_steps"]:
                    break
                if _interrupt_at is not None and step == _interrupt_at:
                    raise Interrupted(f"simulated kill before step {step}")

                # ---- one optimizer step over `accum` micro-batches
                lr = lr_at(step, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss_sum = torch.zeros((), device=device)
                for micro in range(accum):
                    batch = _to(
                        source.micro("train", TRAIN_STREAM, step, rank * accum + micro, world * accum), device
                    )
                    sync = world == 1 or micro == accum - 1
                    with contextlib.nullcontext() if sync else model.no_sync():
                        with autocast:
                            loss = model(batch) / accum
                        if _nan_at is not None and step == _nan_at:
                            loss = loss * float("nan")
                        scaler.scale(loss).backward()
                    loss_sum += loss.detach().float()
                if world > 1:
                    dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg["grad_clip"])
                loss_value, norm_value = torch.stack([loss_sum, grad_norm.float()]).tolist()  # one sync per step
                if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                    diverged_at = {"step": step, "loss": loss_value, "grad_norm": norm_value}
                    break
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                state["grad_norms"].append(norm_value)
                if step % cfg["stats_interval"] == 0:
                    stats = {
                        "step": step,
                        "loss": loss_value,
                        "grad_norm": norm_value,
                        "lr": lr,
                        "clipped": norm_value > cfg["grad_clip"],
                    }
                    stats |= optimizer_norms(raw_model, optimizer)
                    state["stats"].append(stats)
                    if master:
                        loggers.log({f"train/{k}": v for k, v in stats.items() if k != "step"}, step)
                step += 1
                state["step"] = step
                interval_steps += 1
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        loggers.close()

    if not master:
        return {}
    _write_csv(out_dir / "grad_stats.csv", state["stats"])
    emissions = _add_emissions(state["emissions"], meter.summary)
    metrics = _final_metrics(state, cfg, device, world)
    if diverged_at is None and cfg["analysis"]["enabled"]:
        from harmonic.llm.analysis import analyse_model

        metrics |= analyse_model(eval_model, source, cfg, device, autocast, out_dir)
    return {
        "status": "diverged" if diverged_at else "ok",
        "hyperparameters": hyperparameters,
        "metrics": metrics,
        "emissions": emissions,
        "diverged_at": diverged_at,
        "device": device,
    }


def _exit_on_sigterm(signum, frame):
    # SystemExit unwinds through `finally` blocks (the emissions meter closes) and is not caught as a failure, so
    # the job exits non-zero without metrics.json and the scheduler's rerun resumes from ckpt.pt.
    raise SystemExit(128 + signum)


def _save_checkpoint(path, model, optimizer, step, state, emissions_so_far, fingerprint):
    """Atomic (temp file + rename): a kill while saving leaves the previous checkpoint intact.

    The checkpoint carries the emissions up to now; a resumed run's meter starts from zero and adds to them (the
    energy spent between the last checkpoint and the kill is not counted: that process never reported it)."""
    ckpt = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": _rng_state(),
        "fingerprint": fingerprint,
        "state": {**state, "step": step, "emissions": emissions_so_far},
    }
    with atomic_output(path) as tmp:
        torch.save(ckpt, tmp)


def _final_metrics(state, cfg, device, world) -> dict:
    curves = state["curves"]
    last = curves[-1] if curves else {}
    metrics = {
        k: last.get(k) for k in ("train_loss", "val_loss", "train_ppl", "val_ppl", "train_accuracy", "val_accuracy")
    }
    metrics["best_val_loss"] = min((c["val_loss"] for c in curves), default=None)
    # Steady state: the median over eval intervals, leaving out the first (torch.compile and warm-up) when there
    # are others. A resumed run's first interval after the restart is likewise slower; the median absorbs it.
    speeds = [c["tokens_per_s"] for c in curves if c.get("tokens_per_s")]
    mfus = [c["mfu"] for c in curves if c.get("mfu")]
    metrics["tokens_per_s"] = float(np.median(speeds[1:] or speeds)) if speeds else None
    metrics["mfu"] = float(np.median(mfus[1:] or mfus)) if mfus else None
    metrics["tokens_per_s_first_interval"] = speeds[0] if speeds else None
    metrics["steps"] = state["step"]
    metrics["tokens_seen"] = state["step"] * cfg["tokens_per_step"]
    metrics["train_time_s"] = state["train_time"]
    metrics["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    metrics |= grad_stability(state["grad_norms"], cfg["grad_clip"])
    return metrics
