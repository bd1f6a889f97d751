"""Memory probe: the largest micro-batch (sequences per GPU per micro step) that trains without running out of memory.

Tries, from small to large, every micro-batch that divides the sequences each process handles per step (so the
accumulation stays an integer): two full training steps each (forward, backward, AdamW), stopping at the first that
does not fit or leaves less than 10 % of the GPU memory free. On a CPU there is nothing to
probe: the configured micro-batch is returned.
"""

import gc
import json
import sys
from pathlib import Path

import torch

from harmonic.llm.config import block_size, make_optimizer, resolve_config
from harmonic.llm.data import TRAIN_STREAM, BatchSource, TokenBins
from harmonic.llm.models import build_model, special_tokens
from harmonic.runs import resolve_device


def _fits(cfg, bins, micro_batch, device) -> tuple[bool, float]:
    model = optimizer = None
    try:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        # Eager, not compiled: compiling every candidate would take minutes, and eager needs more memory than
        # compiled, so the answer is on the safe side.
        model = build_model(
            cfg["model"],
            cfg["model_args"],
            cfg["head"],
            bins.vocab_size,
            cfg["head_kernel"],
            label_smoothing=cfg["label_smoothing"],
            prob_floor=cfg["prob_floor"],  # the floored loss materialises the logits: probe that path
        ).to(device)
        optimizer = make_optimizer(model, cfg, device)
        source = BatchSource(
            bins, cfg["model"], block_size(cfg), micro_batch, cfg["seed"], special_tokens(bins.vocab_size)
        )
        batch = {k: v.to(device) for k, v in source.micro("train", TRAIN_STREAM, 0, 0, 1).items()}
        for _ in range(2):  # the second step has the optimizer state allocated
            with torch.autocast("cuda", dtype=getattr(torch, cfg["dtype"]), enabled=cfg["dtype"] != "float32"):
                loss = model(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return peak < 0.9 * torch.cuda.get_device_properties(device).total_memory, peak / 1e9
    except torch.cuda.OutOfMemoryError:
        return False, float("nan")
    finally:
        del model, optimizer
        gc.collect()
        torch.cuda.empty_cache()


def probe_micro_batch(cfg: dict, world_size: int = 1) -> dict:
    """{"gpu", "micro_batch", "tried": [{micro_batch, fits, peak_gb}]} for this machine's first device."""
    cfg = resolve_config(cfg)
    device = resolve_device(cfg["device"])
    if device.type != "cuda":
        return {
            "gpu": None,
            "micro_batch": int(cfg["micro_batch"]) if cfg["micro_batch"] != "auto" else 1,
            "tried": [],
        }
    bins = TokenBins(cfg["data_dir"], vocab_limit=cfg["vocab_limit"])
    per_process = cfg["tokens_per_step"] // block_size(cfg) // world_size
    candidates = [m for m in range(1, min(per_process, 256) + 1) if per_process % m == 0]
    tried, best = [], None
    for m in candidates:
        fits, peak = _fits(cfg, bins, m, device)
        tried.append({"micro_batch": m, "fits": fits, "peak_gb": peak})
        if not fits:
            break
        best = m
    if best is None:
        raise RuntimeError(f"not even a micro-batch of 1 sequence fits on {torch.cuda.get_device_name(device)}")
    return {"gpu": torch.cuda.get_device_name(device), "micro_batch": best, "tried": tried}


def probed_micro_batch(path: str | Path | None) -> int | None:
    """The micro-batch of a probe result file when it was measured on this GPU type; otherwise None (the cell
    probes again itself)."""
    if path is None or not Path(path).exists():
        return None
    probe = json.loads(Path(path).read_text())
    here = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    if probe.get("gpu") != here:
        print(f"probe {path} was made on {probe.get('gpu')}, this is {here}; probing again", file=sys.stderr)
        return None
    return probe["micro_batch"]
