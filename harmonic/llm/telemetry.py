"""What a language-model run reports besides its losses: throughput (tokens/s, MFU), memory, gradient statistics,
the curves as CSV, and TensorBoard / Weights & Biases logging."""

import csv
import sys
from pathlib import Path

import numpy as np
import torch

from harmonic.runs import atomic_output

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
LOSS_KEYS = ("train_loss", "val_loss", "train_ppl", "val_ppl", "train_accuracy", "val_accuracy")


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_FLOPS if key in name), None)


def throughput(steps: int, tokens_per_step: int, elapsed: float, flops_per_token: float, peak, world: int) -> dict:
    """Tokens/s over an eval interval and the model FLOPs utilisation (None where not measurable)."""
    tokens_per_s = steps * tokens_per_step / elapsed if steps else None
    mfu = flops_per_token * tokens_per_s / (peak * world) if peak and tokens_per_s else None
    return {"tokens_per_s": tokens_per_s, "mfu": mfu}


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


def final_metrics(state: dict, cfg: dict, device: torch.device) -> dict:
    """The run's metrics from its loop state: the last evaluation, the best val loss, throughput, memory, gradients."""
    curves = state["curves"]
    last = curves[-1] if curves else {}
    metrics = {k: last.get(k) for k in LOSS_KEYS}
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


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


class Loggers:
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
