#!/usr/bin/env python
"""GPU check of the language-model training loop: GPT-2 124M on the embedded corpus, one run per head.

Each run is a separate `python -m harmonic.cli.llm_cell` process (a crash in one head does not stop the others), with
1 GPU (python) or N GPUs (torchrun, DDP). Writes into --out:
    <gpus>gpu/<head>/{metrics.json, curves.csv, grad_stats.csv, emissions.csv, log.txt}
    summary.json, summary.csv   one row per (gpus, head): tokens/s, MFU, peak memory, losses, energy, status
    summary.md                  the same as a markdown table (for docs/results-llm.md, docs/performance.md)
With two GPU counts (e.g. --gpus 1 2) the summary also compares each head's losses and tokens/s across them.

    python benchmarks/gpu_llm_check.py --out gpu_out --steps 200 --heads baseline euclidean cosine
    python benchmarks/gpu_llm_check.py --tiny --out /tmp/gpu_out     # CPU smoke test of this script
"""

import argparse
import csv
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GPT2_124M = {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024}
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32}
# Baek et al.'s GPT-2 schedules (CE 6e-4, harmonic 10x), warmup shortened to the short run.
LR = {"baseline": (6e-4, 3e-5), "harmonic": (6e-3, 3e-4)}


def ensure_data(data_dir: Path) -> None:
    if (data_dir / "meta.json").exists():
        return
    if importlib.util.find_spec("tiktoken") is None:
        sys.exit(
            f"{data_dir}/meta.json is missing and tiktoken is not installed here: prepare the bins elsewhere "
            f"(python -m harmonic.cli.llm_prepare shakespeare --out {data_dir}) and copy them over"
        )
    subprocess.run(
        [sys.executable, "-m", "harmonic.cli.llm_prepare", "shakespeare", "--out", str(data_dir)],
        check=True,
        cwd=REPO,
    )


def params_for(head: str, args) -> dict:
    lr, min_lr = LR["baseline" if head == "baseline" else "harmonic"]
    model_args = TINY if args.tiny else GPT2_124M
    return {
        "model": "gpt",
        "model_args": model_args,
        "head": {"distance": head},
        "seed": 0,
        "data_dir": str(args.data),
        "vocab_limit": 512 if args.tiny else None,
        "tokens_per_step": args.sequences * model_args["block_size"],
        "micro_batch": args.micro_batch,
        "max_steps": args.steps,
        "warmup_steps": max(1, args.steps // 10),
        "lr": lr,
        "min_lr": min_lr,
        "weight_decay": 0.1,
        "betas": [0.9, 0.95],
        "grad_clip": 1.0,
        "eval_interval": args.eval_interval,
        "eval_iters": args.eval_iters,
        "stats_interval": 10,
        "device": "cpu" if args.tiny else "cuda",
        "dtype": "bfloat16",
        "compile": args.compile,
        "tensorboard": False,
        "emissions": {
            "enabled": importlib.util.find_spec("codecarbon") is not None,
            "country_iso_code": "USA",
            "measure_power_secs": 5,
        },
        "analysis": {"enabled": args.analysis},
    }


def run_cell(head: str, gpus: int, args) -> dict:
    out = args.out / f"{gpus}gpu" / head
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").unlink(missing_ok=True)
    params = params_for(head, args)
    launch = [sys.executable]
    if gpus > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
    command = launch + ["-m", "harmonic.cli.llm_cell", "--params-json", json.dumps(params), "--out-dir", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=args.timeout)
    wall = time.perf_counter() - start
    row = {"gpus": gpus, "head": head, "exit_code": proc.returncode, "wall_s": round(wall, 1)}
    if not (out / "metrics.json").exists():
        return row | {"status": "crashed"}
    record = json.loads((out / "metrics.json").read_text())
    metrics, emissions = record["metrics"], record.get("emissions") or {}
    row |= {
        "status": record["status"],
        "error": (record.get("error") or {}).get("message"),
        "gpu": record["provenance"].get("gpu"),
        "steps": metrics.get("steps"),
        "tokens_per_step": params["tokens_per_step"],
        "micro_batch": record["hyperparameters"].get("micro_batch"),
        "grad_accumulation": record["hyperparameters"].get("grad_accumulation"),
        "tokens_per_s": metrics.get("tokens_per_s"),
        "mfu": metrics.get("mfu"),
        "peak_memory_gb": metrics.get("peak_memory_gb"),
        "train_loss": metrics.get("train_loss"),
        "val_loss": metrics.get("val_loss"),
        "grad_norm_mean": metrics.get("grad_norm_mean"),
        "clip_rate": metrics.get("clip_rate"),
        "energy_kwh": emissions.get("energy_kwh"),
        "gpu_energy_kwh": emissions.get("gpu_energy_kwh"),
        "emissions_kg": emissions.get("emissions_kg"),
        "tracking_mode": emissions.get("tracking_mode"),
        "train_time_s": metrics.get("train_time_s"),
    }
    return row


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_out")))
    parser.add_argument("--data", type=Path, default=REPO / "data" / "shakespeare")
    parser.add_argument("--heads", nargs="+", default=["baseline", "euclidean", "cosine"])
    parser.add_argument("--gpus", nargs="+", type=int, default=[1])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--sequences", type=int, default=64, help="sequences of block_size per optimizer step")
    parser.add_argument("--micro-batch", type=int, default=16, help="sequences per GPU per micro step")
    parser.add_argument("--eval-interval", type=int, default=50)
    parser.add_argument("--eval-iters", type=int, default=4)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--analysis", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per run")
    parser.add_argument("--tiny", action="store_true", help="a 1-layer d-32 model on the CPU (tests this script)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ensure_data(args.data)

    rows = []
    for gpus in args.gpus:
        for head in args.heads:
            row = run_cell(head, gpus, args)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if len(args.gpus) > 1:  # DDP check: the same steps on 1 and N GPUs
        base = {r["head"]: r for r in rows if r["gpus"] == args.gpus[0]}
        for row in rows:
            ref = base.get(row["head"])
            if ref is None or row is ref or row.get("val_loss") is None or ref.get("val_loss") is None:
                continue
            row["val_loss_diff_vs_first"] = row["val_loss"] - ref["val_loss"]
            row["train_loss_diff_vs_first"] = row["train_loss"] - ref["train_loss"]
            if row.get("tokens_per_s") and ref.get("tokens_per_s"):
                row["speedup_vs_first"] = row["tokens_per_s"] / ref["tokens_per_s"]

    (args.out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(args.out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    columns = [
        c
        for c in (
            "gpus",
            "head",
            "status",
            "tokens_per_s",
            "mfu",
            "peak_memory_gb",
            "train_loss",
            "val_loss",
            "clip_rate",
            "energy_kwh",
            "speedup_vs_first",
            "val_loss_diff_vs_first",
        )
        if c in fields
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    command = " ".join([Path(sys.executable).name, *sys.argv])
    (args.out / "summary.md").write_text(f"Command: `{command}`\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    if not all(r.get("status") == "ok" for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
