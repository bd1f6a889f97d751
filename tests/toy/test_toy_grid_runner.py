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


def test_geneft_cells_run_batched_as_the_per_cell_job_runs_them(tmp_path):
    """The GenEFT grid runs with benchmarks/toy_grid.py (the H200 route): its cells of one head share a group though
    their learning rates differ, and a cell's curves equal its per-cell job's; the model is saved for stitching."""
    out = tmp_path / "grid"
    config = REPO / "tests/workflow/configs/toy_studies.yaml"
    run = [sys.executable, str(REPO / "benchmarks/toy_grid.py"), "--config", str(config), "--device", "cpu"]
    run += ["--epochs", "2", "--out", str(out), "--only", "study=geneft"]
    log = subprocess.run(run, check=True, cwd=REPO, capture_output=True, text=True).stdout
    assert "4 cells in 2 groups" in log  # 2 heads x 2 encoder lrs: one group per head
    table = pd.read_parquet(out / "toy.parquet")
    assert len(table) == 4 and set(table["status"]) == {"ok"} and set(table["hp.decoder_lr"]) == {0.01}
    row = table[(table["cell.head"] == "euclidean") & (table["cell.encoder_lr"] == 0.01)].iloc[0]
    assert (Path(row["cell_dir"]) / "model.pt").stat().st_size > 0
    hp = json.loads((Path(row["cell_dir"]) / "metrics.json").read_text())["hyperparameters"]
    params = {k: v for k, v in hp.items() if k not in ("head_label", "harmonic_exponent")}
    alone = tmp_path / "alone"
    job = [sys.executable, "-m", "harmonic.cli.toy_cell", "--params-json", json.dumps(params)]
    job += ["--emissions-json", json.dumps({"enabled": False}), "--out-dir", str(alone)]
    subprocess.run(job, check=True, cwd=REPO)
    batched = pd.read_csv(Path(row["cell_dir"]) / "curves.csv")
    pd.testing.assert_frame_equal(batched, pd.read_csv(alone / "curves.csv"), check_exact=True)
