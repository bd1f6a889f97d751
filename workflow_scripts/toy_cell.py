#!/usr/bin/env python
"""Train one toy cell (one task x model x head x seed) and write its results into --out-dir.

Outputs: embedding.npy (final token embedding, for the PCA panels), curves.csv (per-epoch train/test loss and
accuracy), emissions.csv (codecarbon, offline) and metrics.json, written LAST and atomically. A cell that fails with
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

import harmonic  # noqa: E402
from harmonic.emissions import EmissionsMeter  # noqa: E402
from harmonic.metrics import grokking_epoch, pca_summary  # noqa: E402
from harmonic.runs import atomic_output, atomic_write_text, resolve_device, seed_everything, write_metrics  # noqa: E402
from harmonic.toy.datasets import SPLIT_MODES, TASKS  # noqa: E402
from harmonic.toy.models import MODELS  # noqa: E402
from harmonic.toy.train import train_toy  # noqa: E402

DEFAULTS = dict(
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
    device="cpu",
    threads=1,
    grokking_threshold=0.9,
    grokking_window=20,
)
CURVE_COLUMNS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc"]


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
    parser.add_argument("--seed", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--train-fraction", type=float)
    parser.add_argument("--device", help="auto | cpu | cuda")
    return parser.parse_args(argv)


def resolve_hyperparameters(args):
    """Defaults <- --params-json <- individual flags; the head spec resolved (and validated) by the library."""
    hp = json.loads(args.params_json) if args.params_json else {}
    for key in ("task", "model", "split", "seed", "epochs", "lr", "weight_decay", "train_fraction", "device"):
        if getattr(args, key) is not None:
            hp[key] = getattr(args, key)
    head = dict(hp.get("head", {"distance": "euclidean"}))
    if args.distance is not None:
        head = {"distance": args.distance}
    if args.n is not None:
        head["n"] = args.n
    return resolve_params(dict(hp, head=head))


def resolve_params(params):
    """A cell's params (as the workflow passes them) over DEFAULTS, with the head spec resolved and validated."""
    hp = dict(DEFAULTS, head={"distance": "euclidean"})
    hp.update(params)
    hp["head"] = harmonic.resolve_head_spec(hp["head"])
    hp["head_label"] = harmonic.head_label(hp["head"])
    # Paper form: p ~ d^-n. Recorded with every result because the original code used d^2 (effective exponent 2n).
    hp["harmonic_exponent"] = hp["head"].get("n")
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
    for split in ("train", "test"):
        index = grokking_epoch(
            curves[f"{split}_acc"].tolist(), threshold=hp["grokking_threshold"], window=hp["grokking_window"]
        )
        metrics[f"grok_epoch_{split}"] = None if index is None else int(curves["epoch"].iloc[index])
    if result.embedding is not None and np.isfinite(result.embedding).all():
        pca = pca_summary(result.embedding, standardize=False, k=10)
        metrics.update(
            ev_pc1=pca["ev_pc1"],
            ev_pc1_pc2=pca["ev_pc1_pc2"],
            ev_cum_10=pca["ev_cum_10"],
            effective_rank=pca["effective_rank"],
            participation_ratio=pca["participation_ratio"],
        )
    return metrics, curves


def write_cell(out, hp, cell, result, metrics, curves, status, error, emissions, device):
    """A cell's files: embedding.npy, curves.csv, then metrics.json (last, atomically)."""
    embedding = result.embedding if result is not None else np.zeros((0, hp["embed_dim"]), dtype=np.float32)
    with atomic_output(out / "embedding.npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, embedding)
    atomic_write_text(out / "curves.csv", curves.to_csv(index=False))
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


def main(argv=None):
    args = parse_args(argv)
    hp = resolve_hyperparameters(args)
    cell = (
        json.loads(args.cell_json)
        if args.cell_json
        else {"dataset": hp["task"], "model": hp["model"], "head": hp["head_label"], "seed": hp["seed"]}
    )
    emissions_cfg = json.loads(args.emissions_json)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(hp["threads"]))
    device = resolve_device(hp["device"])
    seed_everything(hp["seed"])
    print(f"toy cell {cell} on {device}\nhyperparameters: {json.dumps(hp, sort_keys=True)}", flush=True)

    status, error, result, metrics = "ok", None, None, {}
    curves = pd.DataFrame(columns=CURVE_COLUMNS)
    meter = EmissionsMeter(
        out / "emissions.csv",
        country_iso_code=emissions_cfg.get("country_iso_code", "USA"),
        measure_power_secs=emissions_cfg.get("measure_power_secs", 15),
        enabled=emissions_cfg.get("enabled", True),
    )
    with meter:
        try:
            result = train_toy(hp, device=device, log=lambda line: print(line, flush=True))
        except Exception as exc:  # an ordinary failure is a result too; SIGTERM/Ctrl-C propagate
            status, error = "failed", exc
            print(f"cell failed: {exc!r}", flush=True)
    if result is not None:
        metrics, curves = cell_metrics(hp, result)
        if result.diverged_at:
            status = "diverged"

    write_cell(out, hp, cell, result, metrics, curves, status, error, meter.summary, device)
    print(f"status {status}: {json.dumps({k: metrics.get(k) for k in ('final_test_acc', 'ev_pc1_pc2')})}")


if __name__ == "__main__":
    main()
