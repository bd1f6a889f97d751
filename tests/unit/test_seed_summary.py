"""benchmarks/seed_summary.py: the mean +- std over seeds that docs/ quotes, finished cells only."""

import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
RUN = [sys.executable, str(REPO / "benchmarks/seed_summary.py")]


def test_mean_and_std_over_finished_seeds(tmp_path):
    rows = [{"status": "ok", "head": "h", "seed": s, "acc": a} for s, a in enumerate([0.90, 0.92, 0.94])]
    rows += [
        {"status": "failed", "head": "h", "seed": 3, "acc": 0.0},
        {"status": "ok", "head": "b", "seed": 0, "acc": 0.5},
    ]
    path = tmp_path / "t.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    out = subprocess.run(
        [*RUN, str(path), "--by", "head", "--metrics", "acc"], capture_output=True, text=True, check=True
    )
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "| head | n | acc |"
    assert lines[2] == "| b | 1 | 0.5 |"  # one seed: no spread to give
    assert lines[3] == "| h | 3 | 0.92 +- 0.02 |"  # the failed seed is left out


def test_unknown_column_is_named(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame([{"status": "ok", "head": "h", "acc": 1.0}]).to_csv(path, index=False)
    out = subprocess.run([*RUN, str(path), "--by", "head", "--metrics", "accuracy"], capture_output=True, text=True)
    assert out.returncode != 0 and "unknown columns ['accuracy']" in out.stderr


def test_reads_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame([{"status": "ok", "head": "h", "acc": 1.0}]).to_parquet(path)
    out = subprocess.run(
        [*RUN, str(path), "--by", "head", "--metrics", "acc"], capture_output=True, text=True, check=True
    )
    assert "| h | 1 | 1 |" in out.stdout
