#!/usr/bin/env python
"""Train one vision cell (dataset x backbone x head x seed) and write its results into --out-dir.

Outputs: curves.csv (per epoch), emissions.csv (codecarbon, offline), pca.json (explained-variance spectrum),
weights.npz (only for the MNIST weight study, `save_weights`), tensorboard/ (when switched on) and metrics.json,
written LAST and atomically, with the sha256 of data.npz (checked against meta.json first). An ordinary exception
is recorded as status "failed" and the script exits 0, so tables and figures show it (harmonic.runs.failure_recorded); a non-finite loss is status "diverged"; Ctrl-C / SIGTERM exit non-zero without
metrics.json, so Snakemake reruns the cell.

Example, without Snakemake (prepare the data first with workflow_scripts/vision_data.py):
    python workflow_scripts/vision_cell.py --data-dir data/vision/mnist5k --backbone mlp --distance cosine \
        --epochs 2 --out-dir /tmp/cell
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

import harmonic  # noqa: E402
from harmonic.runs import failure_recorded, resolve_device, verified_data  # noqa: E402
from harmonic.vision.backbones import backbone_names  # noqa: E402
from harmonic.vision.train import resolve_hyperparameters, run_and_record_cell  # noqa: E402

OUTPUTS = ("metrics.json", "curves.csv", "emissions.csv")  # rules/vision.smk declares these
CELL_FIELDS = (
    "backbone",
    "head",
    "seed",
    "device",
    "threads",
)  # params keys that are not training hyperparameters


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, type=Path, help="prepared dataset folder (data.npz + meta.json)")
    parser.add_argument("--out-dir", required=True, type=Path, help="cell directory to write into")
    parser.add_argument(
        "--params-json", help="the cell's resolved parameters as one JSON object (what the workflow passes)"
    )
    parser.add_argument("--cell-json", help="the cell's identity (dataset, model, head, seed) for metrics.json")
    parser.add_argument(
        "--emissions-json", default="{}", help='{"country_iso_code", "measure_power_secs", "enabled"}'
    )
    parser.add_argument("--backbone", choices=backbone_names())
    parser.add_argument("--distance", help="head distance: 'baseline' or a registry name")
    parser.add_argument("--n", type=float, help="harmonic exponent on d")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--device", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="any hyperparameter")
    return parser.parse_args(argv)


def resolve_params(args) -> dict:
    """--params-json <- individual flags; validated (head by the library, training values by train.py)."""
    params = {"backbone": "mlp", "head": {"distance": "euclidean"}, "seed": 0, "device": "auto", "threads": 2}
    if args.params_json:
        params.update(json.loads(args.params_json))
    for key in ("backbone", "seed", "epochs", "batch_size", "lr", "device", "threads"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    for item in args.set:
        key, _, value = item.partition("=")
        params[key] = json.loads(value)
    head = dict(params["head"])
    if args.distance is not None:
        head = {"distance": args.distance}
    if args.n is not None:
        head["n"] = args.n
    params["head"] = harmonic.resolve_head_spec(head)
    resolve_hyperparameters({k: v for k, v in params.items() if k not in CELL_FIELDS})  # fail fast on bad values
    return params


def main(argv=None):
    args = parse_args(argv)
    cell = json.loads(args.cell_json) if args.cell_json else {}
    raw = json.loads(args.params_json) if args.params_json else {}
    with failure_recorded(args.out_dir, family="vision", outputs=OUTPUTS, cell=cell, hyperparameters=raw) as record:
        record["hyperparameters"] = params = resolve_params(args)
        record["cell"] = cell = cell or {
            "dataset": args.data_dir.name,
            "model": params["backbone"],
            "head": harmonic.head_label(params["head"]),
            "seed": params["seed"],
        }
        meta = json.loads((args.data_dir / "meta.json").read_text())
        record["data"] = verified_data(args.data_dir, {"data.npz": meta["sha256"]})
        run_cell(args, params, cell, record["data"])


def run_cell(args, params, cell, data):
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(params["threads"]))
    device = resolve_device(params["device"])
    print(f"vision cell {cell} on {device}\nparams: {json.dumps(params, sort_keys=True)}", flush=True)

    hyper = {k: v for k, v in params.items() if k not in CELL_FIELDS}
    status, result, _ = run_and_record_cell(
        out_dir=out,
        cell=cell,
        fallback_hyperparameters=params,
        device=device,
        data=data,
        data_dir=args.data_dir,
        backbone=params["backbone"],
        head=params["head"],
        seed=int(params["seed"]),
        hyper=hyper,
        emissions=json.loads(args.emissions_json),
    )
    shown = ("test_accuracy", "test_f1_macro", "seconds_per_epoch", "pca_n_pcs_90")
    print(f"status {status}: {json.dumps({k: (result or {}).get('metrics', {}).get(k) for k in shown})}")


if __name__ == "__main__":
    main()
