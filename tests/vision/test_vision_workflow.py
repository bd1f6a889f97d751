"""The vision family inside the workflow: the paper preset plans the whole grid (dry run), and the embedded
default runs end to end on CPU, offline, through the table, the notebooks and the index."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harmonic.vision.grid import vision_cell_dir, vision_cells

ROOT = Path(__file__).resolve().parents[2]


def snakemake(*args, cwd, timeout):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(cwd), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.slow
def test_paper_preset_dry_run_plans_every_vision_cell(tmp_path):
    preset = ROOT / "presets" / "paper.yaml"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sources").symlink_to(ROOT / "data" / "sources")  # fetched at set-up (make)
    expected = len(vision_cells(yaml.safe_load(preset.read_text())["vision"]))
    result = snakemake(
        "-n",
        "--configfile",
        str(preset),
        "--config",
        'families=["vision"]',
        "-c",
        "1",
        "results/tables/vision.parquet",
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    counts = dict(re.findall(r"^(vision_\w+)\s+(\d+)$", result.stdout, re.M))
    assert int(counts["vision_cell"]) == expected
    assert int(counts["vision_download"]) == 2  # cifar10, cifar100 (mnist comes from the offline wheel)


@pytest.mark.slow
def test_default_vision_family_end_to_end(tmp_path):
    result = snakemake(
        "--configfile",
        str(ROOT / "config.yaml"),
        "--config",
        'families=["vision"]',
        "-c",
        "2",
        cwd=tmp_path,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cells = vision_cells(yaml.safe_load((ROOT / "config.yaml").read_text())["vision"])
    for cell in cells:
        path = tmp_path / vision_cell_dir(cell)
        record = json.loads((path / "metrics.json").read_text())
        assert record["status"] == "ok", (path, record["error"])
        assert (path / "curves.csv").stat().st_size > 0
        assert record["cell"]["study"] == cell["study"] and record["hyperparameters"]["setting"] == cell["setting"]
        assert record["hyperparameters"]["harmonic_exponent"] == cell["head"].get("n")
        if cell["study"] == "baek-fig5-mnist-weights":
            assert record["metrics"]["interp_rel_tau0.1"] is not None
    for name in ("vision_tables", "vision_radar", "vision_curves", "vision_weights"):
        assert (tmp_path / "results/notebooks" / f"{name}.html").exists()
    assert "vision_weights" in (tmp_path / "results/index.html").read_text()
