"""The LLM grid of the default config and of the paper preset (cells and a Snakemake dry run)."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harmonic.llm.config import DEFAULTS, SECTION_DEFAULTS
from harmonic.llm.grid import llm_cells

REPO = Path(__file__).resolve().parents[2]


def section(path):
    return yaml.safe_load((REPO / path).read_text())["llm"]


def test_default_grid_is_tiny_and_on_cpu_data():
    cells = llm_cells(section("config.yaml"))
    assert {c["study"] for c in cells} == {"baek-gpt2", "mg-llm"}
    assert {c["head"] for c in cells} >= {"baseline", "euclidean"}
    for cell in cells:
        assert cell["params"]["data_dir"] == "data/shakespeare"
        assert cell["params"]["model_args"]["n_embd"] <= 128


def test_paper_grid_has_the_papers_models():
    cells = {(c["setting"], c["model"], c["head"]): c["params"] for c in llm_cells(section("presets/paper.yaml"))}
    assert cells[("corrected", "baek-gpt2-gpt", "baseline")]["model_args"] == {
        "n_layer": 12,
        "n_head": 12,
        "n_embd": 768,
        "block_size": 1024,
        "attn_scale_by_inverse_layer": True,
    }
    assert cells[("faithful", "mg-llm-qwen2", "cosine")]["model_args"]["n_kv_head"] == 2
    assert cells[("faithful", "mg-llm-bert", "mahalanobis")]["lr"] == 1e-4
    for params in cells.values():
        assert params["max_steps"] == 10000 and params["micro_batch"] == "auto" and params["vocab_limit"] is None


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
    assert counts["llm_cell"] == n_cells == 64
    assert counts["llm_probe"] == n_cells
    assert counts["llm_data_openwebtext"] == 1


@pytest.mark.slow
def test_default_llm_family_runs_end_to_end_offline(tmp_path):
    """The default config's LLM cells, shortened (2 heads, 20 steps), through table, notebooks and index."""
    import json

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sources").symlink_to(REPO / "data" / "sources")
    short = tmp_path / "short.yaml"
    short.write_text(
        "families: [llm]\ndevice: cpu\n"
        "llm: {studies: {mg-llm: {models: [gpt, bert, qwen2], heads: [{distance: baseline}, {distance: euclidean}]}},"
        " train: {max_steps: 20, eval_interval: 10}}\n"
    )
    env_path = f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-c",
            "2",
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(REPO / "config.yaml"),
            str(short),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
        env={**__import__("os").environ, "PATH": env_path},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = sorted((tmp_path / "results" / "llm" / "faithful" / "shakespeare").glob("*/*/seed0/metrics.json"))
    assert len(metrics) == 8  # mg-llm: 3 models x 2 heads, baek-gpt2: gpt x 2 heads
    for path in metrics:
        record = json.loads(path.read_text())
        assert record["status"] == "ok", (path, record["error"])
        val_loss = pd.read_csv(path.parent / "curves.csv")["val_loss"]
        assert val_loss.iloc[-1] == record["metrics"]["val_loss"] < val_loss.iloc[0]  # it learned in 20 steps
    assert (tmp_path / "results" / "notebooks" / "llm_analysis.html").exists()
    assert "llm_training.html" in (tmp_path / "results" / "index.html").read_text()


def test_section_defaults_live_in_the_library_not_the_schema():
    """One place per default: harmonic/llm/config.py fills what the section and a cell leave out; the schema repeats
    none, so a cell of a bare section gets exactly the library's values."""
    text = (REPO / "schemas/llm.schema.yaml").read_text()
    assert "default:" not in text
    bare = {k: v for k, v in section("config.yaml").items() if k not in SECTION_DEFAULTS}
    params = llm_cells(bare)[0]["params"]
    assert params["setting"] == SECTION_DEFAULTS["settings"][0]
    assert params["vocab_limit"] is None and params["tensorboard"] == DEFAULTS["tensorboard"]
    assert params["wandb"] == DEFAULTS["wandb"] and params["analysis"] == DEFAULTS["analysis"]
