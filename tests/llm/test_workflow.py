"""The LLM grid of the default config and of the paper preset (cells, schedules, and a Snakemake dry run)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harmonic.llm.grid import llm_cells

REPO = Path(__file__).resolve().parents[2]


def section(path):
    return yaml.safe_load((REPO / path).read_text())["llm"]


def test_default_grid_is_tiny_and_on_cpu_data():
    cells = llm_cells(section("config.yaml"))
    assert {c["model"] for c in cells} == {"gpt", "bert", "qwen2"}
    assert {c["head"] for c in cells} >= {"baseline", "euclidean", "cosine"}
    for cell in cells:
        assert cell["params"]["data_dir"] == "data/shakespeare"
        assert cell["params"]["model_args"]["n_embd"] <= 128


def test_paper_grid_has_the_papers_models_and_schedules():
    cells = {(c["model"], c["head"]): c["params"] for c in llm_cells(section("presets/paper.yaml"))}
    assert cells[("gpt", "baseline")]["model_args"] == {
        "n_layer": 12,
        "n_head": 12,
        "n_embd": 768,
        "block_size": 1024,
    }
    assert (cells[("gpt", "baseline")]["lr"], cells[("gpt", "baseline")]["warmup_steps"]) == (6e-4, 2000)
    assert (cells[("gpt", "euclidean")]["lr"], cells[("gpt", "euclidean")]["min_lr"]) == (6e-3, 3e-4)
    assert cells[("qwen2", "cosine")]["model_args"]["n_kv_head"] == 2
    assert cells[("bert", "mahalanobis")]["lr"] == 1e-4
    for params in cells.values():
        assert params["tokens_per_step"] == 491520 and params["max_steps"] == 10000
        assert params["micro_batch"] == "auto" and params["vocab_limit"] is None


@pytest.mark.slow
def test_paper_preset_dry_run_plans_the_whole_llm_grid(tmp_path):
    n_cells = len(llm_cells(section("presets/paper.yaml")))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sources").symlink_to(REPO / "data" / "sources")  # the offline sources, as in a checkout
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(REPO / "presets/paper.yaml"),
            "--config",
            "families=[llm]",
            "--quiet",
            "rules",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    counts = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts["llm_cell"] == n_cells == 18
    assert counts["llm_probe"] == n_cells
    assert counts["llm_data_openwebtext"] == 1
