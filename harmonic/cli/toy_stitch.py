"""Stitch one trained toy model (the front) into each of its partners (the backs) and write the results.

Outputs in --out-dir (the front cell's stitch/ folder): pairs.csv (one row per partner: kind, the back's identity
and harmonic.toy.stitching.PAIR_FIELDS) and metrics.json (last, atomically; status, the front's identity with
study "stitch", the per-kind means as metrics), so harmonic/cli/aggregate.py puts it in the toy table as a row.
A failure is recorded (status "failed") and exits 0, as for every cell.

    python -m harmonic.cli.toy_stitch --front results/toy/faithful/modular_addition/mlp/euclidean/seed0 \
        --partner seed=results/toy/faithful/modular_addition/mlp/euclidean/seed1 --out-dir /tmp/stitch
"""

import argparse
import json
from pathlib import Path

import pandas as pd
import torch

from harmonic.runs import atomic_write_text, failure_recorded, write_metrics
from harmonic.toy.stitching import CUTS, PAIR_FIELDS, PARTNER_KINDS, load_trained, stitch_pair, summary_metrics

OUTPUTS = ("metrics.json", "pairs.csv")  # rules/toy.smk (toy_stitch) declares these


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--front", required=True, type=Path, help="the front model's cell directory")
    parser.add_argument(
        "--partner", action="append", default=[], help=f"KIND=DIR, a back model; KIND one of {PARTNER_KINDS}"
    )
    parser.add_argument("--cut", default=CUTS[0], choices=CUTS, help="where the models are cut")
    parser.add_argument("--cell-json", default="{}", help="the row's identity (the front's, study stitch)")
    parser.add_argument("--out-dir", required=True, type=Path)
    return parser.parse_args(argv)


def partners(args):
    """[(kind, directory)] from the --partner values; an unknown kind is an error naming it."""
    out = []
    for item in args.partner:
        kind, _, path = item.partition("=")
        if kind not in PARTNER_KINDS or not path:
            raise ValueError(f"--partner {item!r}: expected KIND=DIR with KIND one of {', '.join(PARTNER_KINDS)}")
        out.append((kind, Path(path)))
    return out


def main(argv=None):
    args = parse_args(argv)
    cell = json.loads(args.cell_json)
    hp = dict(cut=args.cut, front=str(args.front), partners=args.partner)
    torch.set_num_threads(1)
    with failure_recorded(args.out_dir, family="toy", outputs=OUTPUTS, cell=cell, hyperparameters=hp):
        front = load_trained(args.front)
        rows = []
        for kind, path in partners(args):
            back = load_trained(path)
            identity = {f"back_{key}": back.hp[key] for key in ("model", "seed")}
            rows.append(dict(kind=kind, back_dir=str(path), back_head=back.hp["head_label"], **identity))
            rows[-1].update(stitch_pair(front, back))
        columns = ["kind", "back_dir", "back_model", "back_head", "back_seed", *PAIR_FIELDS]
        atomic_write_text(args.out_dir / "pairs.csv", pd.DataFrame(rows, columns=columns).to_csv(index=False))
        hp.update({key: front.hp[key] for key in ("task", "model", "head_label", "seed", "setting")})
        write_metrics(
            args.out_dir / "metrics.json",
            status="ok",
            family="toy",
            cell=cell,
            hyperparameters=hp,
            metrics=summary_metrics(rows),
        )
        print(f"{len(rows)} stitches: {json.dumps(summary_metrics(rows))}")


if __name__ == "__main__":
    main()
