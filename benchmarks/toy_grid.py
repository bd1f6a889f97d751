#!/usr/bin/env python
"""Run a whole toy grid (every cell of a config's toy section) in one process, cells of one shape batched.

Cells are grouped by harmonic.toy.batched.group_key (same task, model, head and shared hyperparameters; seeds, train
fractions, epochs, lr, weight decay and penalty may differ); each group is one ToyGroup. On CUDA every group runs
on its own stream with its epoch captured as a CUDA graph, and the groups advance epoch by epoch in turn, so their
kernels overlap on the GPU. Each cell's files are written as the workflow's toy_cell rule writes them
(results/toy/<setting>/<dataset>/<model>/<head>/seed<k>/), then workflow_scripts/aggregate.py makes the table.

    python benchmarks/toy_grid.py --config presets/paper.yaml --device cuda --out /tmp/grid
    python benchmarks/toy_grid.py --config presets/paper.yaml --epochs 20 --only model=mlp task=lattice --out /tmp/g

A cell's numbers do not depend on which cells share its group (tests/toy/test_batched.py).
"""

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "workflow_scripts"))

import aggregate  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import toy_cell  # noqa: E402
import yaml  # noqa: E402

from harmonic.toy.batched import ToyGroup, group_key  # noqa: E402
from harmonic.toy.grid import toy_cells  # noqa: E402


def toy_section(config_path):
    """config.yaml's toy section with the given file's toy keys over it (how --configfile merges a preset), and the
    schema's defaults for keys neither sets (what the workflow's validation fills in)."""
    section = yaml.safe_load((REPO / "config.yaml").read_text())["toy"]
    if config_path:
        section.update(yaml.safe_load(Path(config_path).read_text()).get("toy") or {})
    schema = yaml.safe_load((REPO / "schemas/toy.schema.yaml").read_text())
    for key, spec in schema["properties"].items():
        if "default" in spec:
            section.setdefault(key, spec["default"])
    return section


def selected(cell, only):
    """Keep a cell when every KEY=VALUE of --only matches its identity (study, task, model, head, dataset, ...)."""
    return all(str(cell.get(key)) == value for key, value in only)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config", help="a preset whose toy section goes over config.yaml's (e.g. presets/paper.yaml)"
    )
    parser.add_argument("--out", required=True, type=Path, help="results root: cells go to OUT/toy/..., table to OUT")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, help="cap every cell's epochs (smoke runs)")
    parser.add_argument("--only", nargs="*", default=[], help="KEY=VALUE filters on the cell identity")
    parser.add_argument("--compile", action="store_true", help="torch.compile each group's step and evaluation")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    only = [item.split("=", 1) for item in args.only]

    cells = [c for c in toy_cells(toy_section(args.config), device=args.device) if selected(c, only)]
    groups = defaultdict(list)
    for cell in cells:
        hp = toy_cell.resolve_params(cell["params"])
        if args.epochs:
            hp["epochs"] = min(hp["epochs"], args.epochs)
        groups[group_key(hp)].append((cell, hp))
    print(f"{len(cells)} cells in {len(groups)} groups on {args.device}", flush=True)

    start = time.time()
    runs = []
    for members in groups.values():
        hps = [hp for _, hp in members]
        runs.append((members, ToyGroup(hps, device=args.device, compile=args.compile)))
    print(f"groups built in {time.time() - start:.1f} s", flush=True)

    start = time.time()
    longest = max(group.max_epochs for _, group in runs)
    for epoch in range(1, longest + 1):
        for _, group in runs:
            if epoch <= group.max_epochs:
                group.advance()
        if epoch == 1:  # eager warm-up and graph capture (or compilation) happen in epoch 1
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            first_epoch_s = time.time() - start
        if epoch == 1 or epoch % max(1, longest // 20) == 0:
            print(f"epoch {epoch}/{longest} queued at {time.time() - start:.1f} s", flush=True)
    results = [(members, group.finish()) for members, group in runs]
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    train_s = time.time() - start
    print(f"trained {len(cells)} cells in {train_s:.1f} s ({train_s / len(cells):.3f} s per cell)", flush=True)

    metrics_files = []
    for members, group_results in results:
        for (cell, hp), result in zip(members, group_results):
            out = args.out / "toy" / cell["setting"] / cell["dataset"] / cell["model"] / cell["head"]
            out = out / f"seed{cell['seed']}"
            out.mkdir(parents=True, exist_ok=True)
            metrics, curves = toy_cell.cell_metrics(hp, result)
            status = "diverged" if result.diverged_at else "ok"
            identity = {k: v for k, v in cell.items() if k != "params"}
            toy_cell.write_cell(out, hp, identity, result, metrics, curves, status, None, {}, args.device)
            metrics_files.append(out / "metrics.json")
    aggregate.main(
        ["--parquet", str(args.out / "toy.parquet"), "--csv", str(args.out / "toy.csv"), *map(str, metrics_files)]
    )
    timing = dict(
        cells=len(cells),
        groups=len(groups),
        train_s=train_s,
        first_epoch_s=first_epoch_s,
        later_epoch_s=(train_s - first_epoch_s) / max(1, longest - 1),
        device=args.device,
        compile=args.compile,
    )
    if args.device.startswith("cuda"):
        timing["gpu"] = torch.cuda.get_device_name()
    (args.out / "timing.json").write_text(json.dumps(timing, indent=1))
    print(pd.Series(timing).to_string(), flush=True)


if __name__ == "__main__":
    main()
