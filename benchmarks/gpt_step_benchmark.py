#!/usr/bin/env python
"""Whole training step of GPT-2 124M (12 layers, 768 wide, block 1024, tied head) with each output head, side by
side in one process: tokens/s, MFU, peak memory, and a CUDA-kernel profile of one step per head.

The step is the one harmonic.llm.train runs (bf16 autocast, torch.compile, fused AdamW, gradient clipping) on
random tokens, 16 sequences per step, so it needs no data. Each head runs twice when it is harmonic: through the
fused kernels (HarmonicHead.loss's default on CUDA) and through the compiled reference path (fused=False).

    PYTHONPATH=. python benchmarks/gpt_step_benchmark.py --out results/bench/gpt-step --heads baseline euclidean
    PYTHONPATH=. python benchmarks/gpt_step_benchmark.py --tiny --out /tmp/gpt-step     # CPU smoke test
Writes <out>/gpt_step.json, <out>/gpt_step.md and <out>/gpt_step_profile.txt.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from harmonic.llm.models import build_model
from harmonic.llm.telemetry import peak_flops

REPO = Path(__file__).resolve().parents[1]

GPT2_124M = {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024}
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}
GPT2_VOCAB = 50257


def make_step(model, optimizer, fused, device):
    """One optimizer step on a batch; fused=False sends harmonic heads through the reference path."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def loss_of(batch):
        x, y = model.labelled_hidden(batch)
        return model.head.loss(x, y, fused="auto" if fused else False)

    compiled = torch.compile(loss_of) if device.type == "cuda" else loss_of

    def step(batch):
        with autocast:
            loss = compiled(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def bench_head(head, fused, args, device, profile_lines):
    torch.manual_seed(0)
    model_args = TINY if args.tiny else GPT2_124M
    vocab = 512 if args.tiny else GPT2_VOCAB
    model = build_model("gpt", model_args, head, vocab).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    step = make_step(model, optimizer, fused, device)
    block = model_args["block_size"]
    gen = torch.Generator(device=device).manual_seed(1)

    def batch():
        tokens = torch.randint(0, vocab, (args.sequences, block + 1), device=device, generator=gen)
        return {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]}

    batches = [batch() for _ in range(4)]
    for i in range(args.warmup):
        step(batches[i % 4])
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for i in range(args.steps):
        loss = step(batches[i % 4])
    final_loss = float(loss)  # synchronises
    elapsed = time.perf_counter() - start
    tokens_per_s = args.steps * args.sequences * block / elapsed
    peak = peak_flops(device)
    flops = model.flops_per_token()
    row = {
        "head": head,
        "path": ("CE" if head == "baseline" else "fused") if fused else "reference (compiled)",
        "tokens_per_s": tokens_per_s,
        "ms_per_step": 1000 * elapsed / args.steps,
        "mfu": flops * tokens_per_s / peak if peak else None,
        "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None,
        "loss": final_loss,
    }
    if device.type == "cuda" and args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step(batches[0])
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=70)
        profile_lines += [f"== {head} ({row['path']}) ==", table, ""]
    del model, optimizer, step
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--heads", nargs="+", default=["baseline", "euclidean", "cosine"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                        help="also time harmonic heads through the compiled reference path")  # fmt: skip
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--tiny", action="store_true", help="a 1-layer d-32 model on the CPU (tests this script)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.steps, args.warmup, args.sequences = 2, 1, 2
    device = torch.device("cpu" if args.tiny else "cuda")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, profile_lines = [], []
    for head in args.heads:
        paths = [True] + ([False] if args.reference and head != "baseline" else [])
        for fused in paths:
            try:
                row = bench_head(head, fused, args, device, profile_lines)
            except Exception as error:  # noqa: BLE001 - one head failing must not hide the others' numbers
                row = {"head": head, "path": "fused" if fused else "reference", "error": repr(error)[:300]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = next((r for r in rows if r["head"] == "baseline" and "tokens_per_s" in r), None)
    for row in rows:
        if base and "tokens_per_s" in row:
            row["vs_ce"] = row["tokens_per_s"] / base["tokens_per_s"]
    meta = {
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "sequences_per_step": args.sequences,
        "steps_timed": args.steps,
        "command": " ".join(["python", *sys.argv]),
    }
    (args.out / "gpt_step.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    (args.out / "gpt_step_profile.txt").write_text("\n".join(profile_lines))
    columns = ("head", "path", "tokens_per_s", "ms_per_step", "mfu", "peak_memory_gb", "vs_ce", "error")
    lines = [
        f"GPU {meta['gpu']}, torch {meta['torch']}, {args.sequences} x 1024 tokens per step, {args.steps} steps timed",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in (row.get(c, "") for c in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    (args.out / "gpt_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
