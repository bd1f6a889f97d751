#!/usr/bin/env python
"""Train one language-model cell (model x head x seed) and write its results into --out-dir.

    python workflow_scripts/llm_cell.py --params-json '{"model": "gpt", "data_dir": "data/shakespeare"}' \
        --out-dir /tmp/llm-cell
    torchrun --standalone --nproc_per_node 2 workflow_scripts/llm_cell.py --params-json ... --out-dir ...

Outputs: curves.csv (per eval), grad_stats.csv (every stats_interval steps), emissions.csv, analysis.json,
parallelogram.csv, tb/ (TensorBoard), ckpt.pt while running, and metrics.json LAST (rank 0 only). The token files
are checked against meta.json's sha256 first and their hashes recorded. An ordinary exception leaves every declared
output and a metrics.json with status "failed" and exits 0 (harmonic.runs.failure_recorded); a NaN/Inf loss or
gradient gives status "diverged"; SIGTERM / Ctrl-C exits non-zero without metrics.json and a rerun resumes from
ckpt.pt.
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from harmonic.llm.train import train  # noqa: E402
from harmonic.runs import failure_recorded, verified_data, write_metrics  # noqa: E402

OUTPUTS = ("metrics.json", "curves.csv", "emissions.csv")  # what rules/llm.smk declares; all exist whatever happens


def probe_micro_batch_from(path: Path | None) -> int | None:
    """The probe's micro-batch when it was measured on this GPU type; otherwise None (train probes again)."""
    if path is None or not path.exists():
        return None
    import torch

    probe = json.loads(path.read_text())
    here = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    if probe.get("gpu") != here:
        print(f"probe {path} was made on {probe.get('gpu')}, this is {here}; probing again", file=sys.stderr)
        return None
    return probe["micro_batch"]


def checked_token_data(data_dir: str) -> dict:
    """train.bin and val.bin checked against the sha256 in meta.json before training (a changed file fails the cell)."""
    meta = json.loads((Path(data_dir) / "meta.json").read_text())
    return verified_data(data_dir, {entry["file"]: entry["sha256"] for entry in meta["splits"].values()})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params-json", required=True, help="the cell's hyperparameters (JSON; defaults fill gaps)")
    parser.add_argument("--cell-json", default="{}", help="the cell's identity (dataset, model, head, seed)")
    parser.add_argument("--emissions-json", default="{}", help="codecarbon settings (country_iso_code, ...)")
    parser.add_argument("--probe", type=Path, help="memory-probe JSON (used when micro_batch is 'auto')")
    parser.add_argument("--out-dir", required=True, type=Path)
    args = parser.parse_args(argv)

    params = json.loads(args.params_json)
    params["emissions"] = json.loads(args.emissions_json) or params.get("emissions", {})
    cell = json.loads(args.cell_json) or {
        "dataset": Path(params.get("data_dir", "data/shakespeare")).name,
        "model": params.get("model", "gpt"),
        "head": params.get("head", {}).get("distance", "baseline"),
        "seed": params.get("seed", 0),
    }
    with failure_recorded(args.out_dir, family="llm", outputs=OUTPUTS, cell=cell, hyperparameters=params) as record:
        record["data"] = checked_token_data(params.get("data_dir", "data/shakespeare"))
        micro_batch = probe_micro_batch_from(args.probe) if params.get("micro_batch") == "auto" else None
        result = train(params, args.out_dir, micro_batch=micro_batch)
        if int(os.environ.get("RANK", 0)) != 0:
            return
        write_metrics(
            args.out_dir / "metrics.json",
            status=result["status"],
            family="llm",
            cell=cell,
            hyperparameters=result["hyperparameters"],
            metrics=result["metrics"],
            emissions=result["emissions"],
            diverged_at=result["diverged_at"],
            device=result["device"],
            data=record["data"],
        )
        if not result["hyperparameters"].get("keep_checkpoint"):
            (args.out_dir / "ckpt.pt").unlink(missing_ok=True)
        shown = {k: result["metrics"].get(k) for k in ("val_loss", "val_ppl")}
        print(json.dumps({"status": result["status"], **shown}))


if __name__ == "__main__":
    main()
