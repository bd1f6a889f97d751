#!/usr/bin/env python
"""Train one toy cell (one task x model x head x seed, or one two-point run) and write its results into --out-dir.

Outputs: embedding.npy (final token embedding, for the PCA panels; the final 2 x 2 weight for the two-point study),
model.pt (the final parameters by name, torch.save of a dict of tensors, for the stitching study; empty dict for the
two-point study),
curves.csv (per-epoch train/test loss and accuracy; per-step loss and weight norm for the two-point study), emissions.csv (codecarbon, offline) and metrics.json, written LAST and atomically. A cell that fails with
an ordinary exception still writes every output (metrics.json with status "failed" and the error) and exits 0, so
the tables and figures show it; Ctrl-C or SIGTERM exits non-zero and writes no metrics.json, so Snakemake reruns it.

Example, without Snakemake:
    python workflow_scripts/toy_cell.py --task modular_addition --model mlp --distance euclidean --epochs 50 \
        --out-dir /tmp/cell
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from harmonic.emissions import EmissionsMeter  # noqa: E402
from harmonic.metrics import grokking_epoch, pca_summary  # noqa: E402
from harmonic.runs import (  # noqa: E402
    atomic_output,
    atomic_write_text,
    failure_recorded,
    resolve_device,
    seed_everything,
    write_metrics,
)
from harmonic.toy.datasets import EV_ROWS, SPLIT_MODES, TASKS, ev_rows  # noqa: E402
from harmonic.toy.geneft import phase_metrics  # noqa: E402
from harmonic.toy.models import MODELS, harmonic_exponent, resolve_toy_head, toy_head_label  # noqa: E402
from harmonic.toy.train import train_toy  # noqa: E402
from harmonic.toy.two_points import train_two_points  # noqa: E402

# Without --params-json: the corrected setting (the workflow passes every value, see config.yaml `toy`).
DEFAULTS = dict(
    setting="corrected",
    study="grid",
    task="modular_addition",
    model="mlp",
    seed=0,
    split="original",
    n_samples=1000,
    train_fraction=0.8,
    embed_dim=16,
    epochs=100,
    lr=2e-3,
    batch_size=32,
    weight_decay=0.01,
    embedding_penalty=0.01,
    mlp_penalty_gradient=True,
    distance_power=1,
    embedding_init="normal",
    transformer="prenorm",
    ev_rows="objects",
    device="cpu",
    threads=1,
    grokking_threshold=0.9,
    grokking_window=20,
)
# The two-point study (harmonic/toy/two_points.py) uses only these.
TWO_POINT_DEFAULTS = dict(
    setting="corrected",
    study="two_points",
    task="two_points",
    model="layer",
    seed=0,
    steps=10000,
    lr=0.01,
    distance_power=1,
    device="cpu",
    threads=1,
)
OUTPUTS = ("metrics.json", "curves.csv", "emissions.csv", "embedding.npy", "model.pt")  # rules/toy.smk declares these
CURVE_COLUMNS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc"]
TWO_POINT_COLUMNS = ["step", "loss", "weight_norm"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", required=True, type=Path, help="cell directory to write into")
    parser.add_argument(
        "--params-json",
        help="all resolved hyperparameters as one JSON object (what the workflow passes); flags below override it",
    )
    parser.add_argument(
        "--emissions-json", default="{}", help='{"country_iso_code", "measure_power_secs", "enabled"}'
    )
    parser.add_argument(
        "--cell-json", default=None, help="the cell's identity (dataset, model, head, seed) for metrics.json"
    )
    parser.add_argument("--task", choices=TASKS)
    parser.add_argument("--model", choices=MODELS)
    parser.add_argument("--distance", help="head distance: 'baseline' or a registry name")
    parser.add_argument("--n", type=float, help="harmonic exponent on d")
    parser.add_argument("--split", choices=SPLIT_MODES)
    parser.add_argument("--ev-rows", choices=EV_ROWS)
    parser.add_argument("--distance-power", type=int, choices=[1, 2], help="HarMax on d (1) or on d^2 (2)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--train-fraction", type=float)
    parser.add_argument("--device", help="auto | cpu | cuda")
    return parser.parse_args(argv)


def resolve_hyperparameters(args):
    """Defaults <- --params-json <- individual flags; the head spec resolved (and validated) by the library."""
    params = json.loads(args.params_json) if args.params_json else {}
    keys = ("task", "model", "split", "seed", "epochs", "lr", "weight_decay", "train_fraction", "device", "ev_rows")
    for key in (*keys, "distance_power"):
        if getattr(args, key, None) is not None:
            params[key] = getattr(args, key)
    head = dict(params.get("head", {"distance": "euclidean"}))
    if args.distance is not None:
        head = {"distance": args.distance}
    if args.n is not None:
        head["n"] = args.n
    return resolve_params(dict(params, head=head))


def resolve_params(params):
    """A cell's params (as the workflow passes them) over the defaults, the head spec resolved and validated."""
    base = TWO_POINT_DEFAULTS if params.get("study") == "two_points" else DEFAULTS
    hp = dict(base, head={"distance": "euclidean"})
    hp.update(params)
    hp["head"] = resolve_toy_head(hp["head"])
    hp["head_label"] = toy_head_label(hp["head"])
    # Paper form: p ~ d^-n, the exponent on d the model is built with: the head's n times distance_power (the
    # original raised d^2 to -n). None for heads without one (the baseline, the ablation heads).
    hp["harmonic_exponent"] = harmonic_exponent(hp["head"], hp["distance_power"])
    return hp


def cell_metrics(hp, result):
    """Final numbers, grokking epochs (1-based; None = never) and the embedding's PCA summary."""
    curves = pd.DataFrame(result.curves, columns=CURVE_COLUMNS)
    metrics = dict(
        epochs_run=len(curves),
        n_train=result.n_train,
        n_test=result.n_test,
        n_parameters=result.n_parameters,
        test_overlap_fraction=result.overlap_fraction,
    )
    if len(curves):
        last = curves.iloc[-1]
        metrics.update({f"final_{key}": float(last[key]) for key in CURVE_COLUMNS[1:]})
    metrics.update(phase_metrics(hp, metrics.get("final_test_acc")))
    for split in ("train", "test"):
        index = grokking_epoch(
            curves[f"{split}_acc"].tolist(), threshold=hp["grokking_threshold"], window=hp["grokking_window"]
        )
        metrics[f"grok_epoch_{split}"] = None if index is None else int(curves["epoch"].iloc[index])
    if result.embedding is not None and np.isfinite(result.embedding).all():
        metrics.update(embedding_metrics(hp, result.embedding))
    return metrics, curves


def embedding_metrics(hp, embedding):
    """EV of the top PCs over the rows ev_rows(task, mode) selects (datasets.ev_rows says which and why)."""
    rows = {figure: ev_rows(hp["task"], len(embedding), hp["ev_rows"], figure) for figure in ("pc1_pc2", "cum_10")}
    pca = pca_summary(embedding[rows["pc1_pc2"]], standardize=False, k=10)
    return dict(
        ev_pc1=pca["ev_pc1"],
        ev_pc1_pc2=pca["ev_pc1_pc2"],
        ev_cum_10=pca_summary(embedding[rows["cum_10"]], standardize=False, k=10)["ev_cum_10"],
        effective_rank=pca["effective_rank"],
        participation_ratio=pca["participation_ratio"],
        ev_rows_pc1_pc2=len(rows["pc1_pc2"]),
        ev_rows_cum_10=len(rows["cum_10"]),
    )


def run_cell(hp, device):
    """Train the cell; returns (result or None, metrics, curves, embedding, status, error)."""
    status, error, result, metrics = "ok", None, None, {}
    columns = TWO_POINT_COLUMNS if hp["study"] == "two_points" else CURVE_COLUMNS
    curves, embedding = pd.DataFrame(columns=columns), None
    try:
        if hp["study"] == "two_points":
            rows, embedding, metrics = train_two_points(hp, log=lambda line: print(line, flush=True))
            curves = pd.DataFrame(rows, columns=columns)
            if not np.isfinite(embedding).all():
                status = "diverged"
        else:
            result = train_toy(hp, device=device, log=lambda line: print(line, flush=True))
    except Exception as exc:  # an ordinary failure is a result too; SIGTERM/Ctrl-C propagate
        status, error = "failed", exc
        print(f"cell failed: {exc!r}", flush=True)
    if result is not None:
        metrics, curves = cell_metrics(hp, result)
        embedding = result.embedding
        if result.diverged_at:
            status = "diverged"
    return result, metrics, curves, embedding, status, error


def main(argv=None):
    args = parse_args(argv)
    cell = json.loads(args.cell_json) if args.cell_json else {}
    raw = json.loads(args.params_json) if args.params_json else {}
    with failure_recorded(args.out_dir, family="toy", outputs=OUTPUTS, cell=cell, hyperparameters=raw) as record:
        record["hyperparameters"] = hp = resolve_hyperparameters(args)
        record["cell"] = cell = cell or {
            "dataset": hp["task"],
            "model": hp["model"],
            "head": hp["head_label"],
            "seed": hp["seed"],
        }
        write_cell(args, hp, cell)


def write_cell(args, hp, cell):
    """Train the cell under the emissions meter and write its outputs, metrics.json last."""
    emissions_cfg = json.loads(args.emissions_json)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(hp["threads"]))
    device = resolve_device(hp["device"])
    seed_everything(hp["seed"])
    print(f"toy cell {cell} on {device}\nhyperparameters: {json.dumps(hp, sort_keys=True)}", flush=True)

    meter = EmissionsMeter(
        out / "emissions.csv",
        country_iso_code=emissions_cfg.get("country_iso_code", "USA"),
        measure_power_secs=emissions_cfg.get("measure_power_secs", 15),
        enabled=emissions_cfg.get("enabled", True),
    )
    with meter:
        result, metrics, curves, embedding, status, error = run_cell(hp, device)
    write_outputs(out, hp, cell, result, metrics, curves, embedding, status, error, meter.summary, device)
    shown = ("final_test_acc", "ev_pc1_pc2", "centre_distance_final", "weight_norm_growth")
    print(f"status {status}: {json.dumps({k: metrics[k] for k in shown if k in metrics})}")


def write_outputs(out, hp, cell, result, metrics, curves, embedding, status, error, emissions, device):
    """embedding.npy, curves.csv, then metrics.json (last, atomically); benchmarks/toy_grid.py writes through it too."""
    if embedding is None:
        embedding = np.zeros((0, hp.get("embed_dim", 2)), dtype=np.float32)
    with atomic_output(out / "embedding.npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, embedding)
    atomic_write_text(out / "curves.csv", curves.to_csv(index=False))
    with atomic_output(out / "model.pt") as tmp:
        torch.save(result.state if result is not None and result.state is not None else {}, tmp)
    write_metrics(
        out / "metrics.json",
        status=status,
        family="toy",
        cell=cell,
        hyperparameters=hp,
        metrics=metrics,
        emissions=emissions,
        diverged_at=result.diverged_at if result is not None else None,
        error=error,
        device=device,
    )


if __name__ == "__main__":
    main()
