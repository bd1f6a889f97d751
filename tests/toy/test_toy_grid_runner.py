"""benchmarks/toy_grid.py: a grid run batched in one process writes the cells the workflow's per-cell job writes."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
ONLY = ["task=lattice", "model=mlp", "study=grid", "setting=faithful", "seed=0,52"]


def test_batched_grid_cells_equal_the_per_cell_job(tmp_path):
    out = tmp_path / "grid"
    run = [sys.executable, str(REPO / "benchmarks/toy_grid.py"), "--config", str(REPO / "presets/paper.yaml")]
    run += ["--device", "cpu", "--epochs", "2", "--out", str(out), "--only", *ONLY]
    subprocess.run(run, check=True, cwd=REPO)
    table = pd.read_parquet(out / "toy.parquet")
    assert len(table) == 4 and set(table["status"]) == {"ok"}  # 2 heads x 2 seeds, one group per head
    assert set(table["hp.epochs"]) == {2} and set(table["cell.setting"]) == {"faithful"}

    row = table[(table["cell.head"] == "euclidean") & (table["cell.seed"] == 52)].iloc[0]
    hp = json.loads((Path(row["cell_dir"]) / "metrics.json").read_text())["hyperparameters"]
    params = {k: v for k, v in hp.items() if k not in ("head_label", "harmonic_exponent")}
    alone = tmp_path / "alone"
    job = [sys.executable, "-m", "harmonic.cli.toy_cell", "--params-json", json.dumps(params)]
    job += ["--emissions-json", json.dumps({"enabled": False}), "--out-dir", str(alone)]
    subprocess.run(job, check=True, cwd=REPO)
    batched = pd.read_csv(Path(row["cell_dir"]) / "curves.csv")
    pd.testing.assert_frame_equal(batched, pd.read_csv(alone / "curves.csv"), check_exact=True)
