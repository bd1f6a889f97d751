#!/usr/bin/env python
"""Run a whole toy grid (every cell of a config's toy section) in one process, cells of one shape batched.

Cells are grouped by harmonic.toy.batched.group_key (same task, model, head and shared hyperparameters; seeds, train
fractions, epochs, lr, weight decay and penalty may differ); each group is one ToyGroup. On CUDA every group runs
on its own stream with its epoch captured as a CUDA graph, and the groups advance epoch by epoch in turn, so their
kernels overlap on the GPU. Each cell's files are written as the workflow's toy_cell rule writes them
(results/toy/<setting>/<dataset>/<model>/<head>/seed<k>/), then harmonic/cli/aggregate.py makes the table.

    python benchmarks/toy_grid.py --config presets/paper.yaml --device cuda --out /tmp/grid
    python benchmarks/toy_grid.py --config presets/paper.yaml --epochs 20 --only model=mlp task=lattice --out /tmp/g

A cell's numbers do not depend on which cells share its group (tests/toy/test_batched.py).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd
import torch
import yaml

from harmonic import cell
from harmonic.cli import aggregate
from harmonic.toy.batched import ToyGroup, group_key
from harmonic.toy.config import resolve
from harmonic.toy.grid import toy_cells
from harmonic.toy.train import FAMILY, trained

REPO = Path(__file__).resolve().parents[1]


def toy_section(config_path):
    """config.yaml's toy section with the given file's toy keys over it (how --configfile merges a preset); toy_cells
    fills the defaults of keys neither sets (harmonic/toy/config.py)."""
    section = yaml.safe_load((REPO / "config.yaml").read_text())["toy"]
    if config_path:
        section.update(yaml.safe_load(Path(config_path).read_text()).get("toy") or {})
    return section


def selected(cell, only):
    """Keep a cell when every KEY=VALUE[,VALUE...] of --only matches its identity (study, task, model, head, ...)."""
    return all(str(cell.get(key)) in values.split(",") for key, values in only)


def plan(args):
    """Every selected cell with its resolved hyperparameters, grouped by group_key (config order kept)."""
    only = [item.split("=", 1) for item in args.only]
    cells = [c for c in toy_cells(toy_section(args.config), device=args.device) if selected(c, only)]
    groups = defaultdict(list)
    for identity in cells:
        hp = resolve(identity["params"])
        if args.epochs and "epochs" in hp:
            hp["epochs"] = min(hp["epochs"], args.epochs)
        if args.compile and hp["study"] != "two_points":
            hp["compile"] = True  # recorded with the cell's hyperparameters (it changes the float rounding)
        # The two-point toy (full-batch, its own trainer) runs cell by cell: one group per cell.
        key = repr(identity) if hp["study"] == "two_points" else group_key(hp)
        groups[key].append((identity, hp))
    return cells, list(groups.values())


def share(groups, part, parts):
    """The groups worker `part` of `parts` runs: longest first, each to the least loaded worker."""

    def cost(members):
        if members[0][1]["study"] == "two_points":
            return 1.0
        steps = max(math.ceil(hp["n_samples"] * hp["train_fraction"] / hp["batch_size"]) for _, hp in members)
        weight = 3 if members[0][1]["model"] == "transformer" else 1
        return max(hp["epochs"] for _, hp in members) * steps * weight

    load, mine = [0.0] * parts, []
    for members in sorted(groups, key=cost, reverse=True):
        worker = load.index(min(load))
        load[worker] += cost(members)
        if worker == part:
            mine.append(members)
    return mine


def write(args, identity, hp, result, status=None, error=None):
    """One cell's files, as the workflow's toy_cell job writes them (harmonic.cell.write_outputs)."""
    parts = (identity["setting"], identity["dataset"], identity["model"], identity["head"], f"seed{identity['seed']}")
    identity = {k: v for k, v in identity.items() if k != "params"}
    out = args.out.joinpath("toy", *parts)
    cell.write_outputs(
        FAMILY, out, result, cell=identity, hyperparameters=hp, device=args.device, status=status, error=error
    )


def train_groups(groups, args):
    """Train the groups together, epoch by epoch in turn; write every cell's files; return timings."""
    start = time.time()
    two_points = [members for members in groups if members[0][1]["study"] == "two_points"]
    groups = [members for members in groups if members not in two_points]
    for [(identity, hp)] in [] if args.no_write else two_points:
        context = cell.CellContext(out_dir=args.out, device=torch.device("cpu"), meter=cell.NoMeter())
        write(args, identity, hp, FAMILY.train(hp, context))
    runs = [
        (members, ToyGroup([hp for _, hp in members], device=args.device, compile=members[0][1]["compile"]))
        for members in groups
    ]
    longest, first_epoch_s = max((group.max_epochs for _, group in runs), default=0), 0.0
    stopped = None
    for epoch in range(1, longest + 1):
        if args.deadline and epoch % 50 == 0 and time.time() - args.started > args.deadline:
            stopped = epoch - 1
            print(f"[part {args.part}] deadline: stopped after epoch {stopped}", flush=True)
            break
        for _, group in runs:
            if epoch <= group.max_epochs:
                group.advance()
        if epoch == 1:  # eager warm-up, compilation and graph capture happen in epoch 1
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            first_epoch_s = time.time() - start
        if epoch == 1 or epoch % max(1, longest // 40) == 0:
            print(f"[part {args.part}] epoch {epoch}/{longest} queued at {time.time() - start:.1f} s", flush=True)
    results = [(members, group.finish()) for members, group in runs]
    train_s = time.time() - start

    for members, group_results in [] if args.no_write else results:
        for (identity, hp), result in zip(members, group_results):
            status = error = None
            if stopped is not None and stopped < hp["epochs"] and not result.diverged_at:
                status, error = "failed", {"type": "Deadline", "message": f"stopped after epoch {stopped}"}
            write(args, identity, hp, trained(hp, result), status, error)
    return dict(
        train_s=train_s, first_epoch_s=first_epoch_s, later_epoch_s=(train_s - first_epoch_s) / max(1, longest - 1)
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config", help="a preset whose toy section goes over config.yaml's (e.g. presets/paper.yaml)"
    )
    parser.add_argument("--out", required=True, type=Path, help="results root: cells go to OUT/toy/..., table to OUT")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, help="cap every cell's epochs (smoke runs)")
    parser.add_argument("--only", nargs="*", default=[], help="KEY=VALUE filters on the cell identity")
    parser.add_argument("--compile", action="store_true", help="compile each group's step and evaluation (inductor)")
    parser.add_argument("--parts", type=int, default=1, help="worker processes (each compiles and runs its groups)")
    parser.add_argument(
        "--warm", type=int, default=0, help="first compile every group for 1 epoch in this many processes"
    )
    parser.add_argument("--warm-only", action="store_true", help="fill the compile caches, then exit (no training)")
    parser.add_argument("--deadline", type=float, help="seconds after start: stop training, write what was reached")
    parser.add_argument("--part", type=int, help=argparse.SUPPRESS)  # set for the workers
    parser.add_argument("--started", type=float, default=time.time(), help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help=argparse.SUPPRESS)  # compile warm-up workers
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    cells, groups = plan(args)
    if args.part is not None:  # a worker: its share of the groups, then exit
        timing = train_groups(share(groups, args.part, args.parts), args)
        if args.no_write:
            return
        (args.out / f"timing-part{args.part}.json").write_text(json.dumps(timing))
        return
    print(f"{len(cells)} cells in {len(groups)} groups on {args.device}, {args.parts} worker(s)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    argv = (sys.argv[1:] if argv is None else list(argv)) + ["--started", str(start)]
    if args.warm:  # compile caches (inductor's, on disk) filled in parallel; the run below then hits them
        warm_argv = [*argv, "--parts", str(args.warm), "--epochs", "1", "--no-write"]
        warm = [subprocess.Popen([sys.executable, __file__, *warm_argv, "--part", str(p)]) for p in range(args.warm)]
        if any(w.wait() != 0 for w in warm):
            raise SystemExit("compile warm-up failed")
        print(f"compile warm-up done at {time.time() - start:.1f} s", flush=True)
    if args.warm_only:
        return
    workers = [subprocess.Popen([sys.executable, __file__, *argv, "--part", str(part)]) for part in range(args.parts)]
    failed = [part for part, worker in enumerate(workers) if worker.wait() != 0]
    wall_s = time.time() - start
    if failed:
        raise SystemExit(f"worker(s) {failed} failed")
    parts = [json.loads((args.out / f"timing-part{p}.json").read_text()) for p in range(args.parts)]
    metrics_files = sorted((args.out / "toy").glob("*/*/*/*/seed*/metrics.json"))
    aggregate.main(
        ["--parquet", str(args.out / "toy.parquet"), "--csv", str(args.out / "toy.csv"), *map(str, metrics_files)]
    )
    timing = dict(
        cells=len(cells),
        groups=len(groups),
        parts=args.parts,
        wall_s=wall_s,
        wall_s_per_cell=wall_s / len(cells),
        slowest_part_train_s=max(p["train_s"] for p in parts),
        slowest_part_first_epoch_s=max(p["first_epoch_s"] for p in parts),
        device=args.device,
        compile=args.compile,
        epochs_cap=args.epochs,
        gpu=torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        cpu_count=os.cpu_count(),
        torch=torch.__version__,
    )
    (args.out / "timing.json").write_text(json.dumps(timing, indent=1))
    print(pd.Series(timing).to_string(), flush=True)


if __name__ == "__main__":
    main()
