"""The workflow as a user drives it: dry runs of both configs, schema rejections, only-stale-cells reruns,
a killed job rerun with --rerun-incomplete, and a tiny end-to-end CPU run (table, notebooks, index.html)."""

import json
import os
import re
import signal
import subprocess
import time

import pandas as pd
import pytest
import yaml
from workflow_helpers import (
    BIN,
    REPO,
    job_counts,
    load_config,
    planned_outputs,
    snakemake,
    toy_grid_size,
    write_config,
)

DOWNSTREAM = {"aggregate": 1, "notebook": 6, "claims": 1, "index": 1, "all": 1}  # toy table, notebooks, claims, index


def repo_config(relative):
    with open(REPO / relative) as handle:
        return yaml.safe_load(handle)


# ------------------------------------------------------------------------------------------------- dry runs
def like_a_checkout(tmp_path):
    """A working directory that, like the repository, has data/ (some families read shipped sources there)."""
    (tmp_path / "data").symlink_to(REPO / "data", target_is_directory=True)
    return tmp_path


def test_default_config_plans_its_grid(tmp_path):
    result = snakemake(like_a_checkout(tmp_path), "-n")
    counts = job_counts(result.stdout)
    assert counts["toy_cell"] == toy_grid_size(repo_config("config.yaml")["toy"])
    for rule, count in DOWNSTREAM.items():
        assert counts[rule] >= count


def test_each_cell_job_takes_its_program_as_an_input(tmp_path):
    """`python -m harmonic.cli.<family>_cell` runs the program; its file is an input, so editing it makes exactly the
    family's cells stale (Snakemake's mtime trigger), and no other job."""
    result = snakemake(like_a_checkout(tmp_path), "-n")
    jobs = re.findall(r"rule (\w+):\n\s+input: ([^\n]*)", result.stdout)
    for family in ("toy", "vision", "llm"):
        program = str(REPO / "harmonic" / "cli" / f"{family}_cell.py")
        inputs = [line for rule, line in jobs if rule == f"{family}_cell"]
        assert inputs and all(program in line for line in inputs), family
        assert all(program not in line for rule, line in jobs if rule != f"{family}_cell"), family


def test_paper_preset_plans_the_full_grid(tmp_path):
    result = snakemake(like_a_checkout(tmp_path), "-n", configfile=REPO / "presets/paper.yaml")
    paper = repo_config("presets/paper.yaml")["toy"]
    counts = job_counts(result.stdout)
    assert counts["toy_cell"] == toy_grid_size(paper)
    # The grid the paper describes: 5 tasks x 2 models x heads x 20 seeds (+ the other studies), in both settings.
    planned = planned_outputs(result.stdout, "toy_cell")
    metrics = [p for p in planned if p.endswith("metrics.json")]
    assert {p.split("/")[2] for p in metrics} == {"faithful", "corrected"}
    datasets = {p.split("/")[3] for p in metrics}
    assert set(paper["tasks"]) <= datasets and {"circle", "two_points"} <= datasets
    assert {f"{t}-ablation" for t in paper["ablation"]["tasks"]} | {
        f"{t}-nsweep" for t in paper["n_sweep"]["tasks"]
    } <= datasets
    studies = ("data_efficiency", "circle", "two_points", "ablation", "n_sweep", "geneft")
    seeds = set(paper["seeds"]).union(*(paper[study]["seeds"] for study in studies))
    assert {p.split("/")[6] for p in metrics} == {f"seed{seed}" for seed in seeds}


# ------------------------------------------------------------------------------------------ schema rejections
@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["toy"]["heads"][1].update(distance="cosin"), ["toy.heads[1]", "'cosin'", "cosine", "euclidean"]),
        (lambda c: c["toy"]["train"].update(lr="fast"), ["toy.train.lr", "'fast'", "number"]),
        (lambda c: c["toy"].update(train_fraction=1.5), ["toy.train_fraction", "1.5", "< 1"]),
        (lambda c: c["toy"]["heads"][1].update(n=-2.0), ["toy.heads[1]", "n"]),
        (lambda c: c["toy"].update(tasks=["modular"]), ["toy.tasks[0]", "'modular'", "modular_addition"]),
        (lambda c: c.update(device="tpu"), ["config device", "auto, cpu, cuda"]),
    ],
    ids=["distance-typo", "wrong-type", "out-of-range", "head-param-range", "unknown-task", "top-level-enum"],
)
def test_bad_config_stops_before_any_job(tmp_path, edit, expected):
    config = load_config("tiny.yaml")
    edit(config)
    result = snakemake(tmp_path, configfile=write_config(tmp_path / "bad.yaml", config), check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    for text in expected:
        assert text in message, f"{text!r} not in:\n{message[-3000:]}"
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "logs").exists()


# ---------------------------------------------------------------------------------------- tiny run end to end
@pytest.mark.slow
def test_tiny_run_end_to_end(tiny_run):
    workdir, config_path, _ = tiny_run
    config = yaml.safe_load(config_path.read_text())
    table = pd.read_parquet(workdir / "results/tables/toy.parquet")
    assert len(table) == toy_grid_size(config["toy"])
    assert (table["status"] == "ok").all()
    assert pd.read_csv(workdir / "results/tables/toy.csv").shape == table.shape
    assert set(table["cell.study"]) == {"grid", "data_efficiency", "circle"}
    for _, row in table.iterrows():
        record = json.loads((workdir / row["cell_dir"] / "metrics.json").read_text())
        assert record["hyperparameters"]["epochs"] == 3
        assert record["metrics"]["final_test_acc"] == pytest.approx(row["final_test_acc"])
        assert len(pd.read_csv(workdir / row["cell_dir"] / "curves.csv")) == 3
        assert (workdir / row["cell_dir"] / "emissions.csv").exists()
    harmonic = table[table["cell.head"] == "euclidean"]
    assert (harmonic["hp.harmonic_exponent"] == 1.0).all()

    index = (workdir / "results/index.html").read_text()
    for name in ("toy_ev", "toy_grokking", "toy_data_efficiency", "toy_pca", "toy_circle", "toy_studies"):
        html = (workdir / f"results/notebooks/{name}.html").read_text()
        assert f"notebooks/{name}.html" in index
        assert not re.search(r"""(src|href)\s*=\s*["']https?://""", html), f"{name}.html loads from the network"
        assert not re.search(r"cdnjs|jsdelivr|unpkg|mathjax", html, re.IGNORECASE)
        assert "Traceback" not in html
        for figure in (workdir / f"results/figures/{name}").glob("*.png"):
            assert f"figures/{name}/{figure.name}" in index
    assert len(list((workdir / "results/figures").glob("*/*.png"))) >= 5
    # The notebooks show the cells' numbers: the EV table holds the per-cell EV of the grid cells.
    ev_html = (workdir / "results/notebooks/toy_ev.html").read_text()
    grid = table[table["cell.study"] == "grid"]
    for value in grid["ev_pc1_pc2"]:
        assert f"{value:.3f}" in ev_html
    circle_html = (workdir / "results/notebooks/toy_circle.html").read_text()
    for value in table[table["cell.study"] == "circle"]["final_test_acc"]:
        assert f"{value:.3f}" in circle_html


@pytest.mark.slow
def test_report_includes_the_figures(tiny_run):
    workdir, config_path, _ = tiny_run
    snakemake(workdir, "--report", "results/report.html", configfile=config_path)
    assert (workdir / "results/report.html").stat().st_size > 10_000


# ------------------------------------------------------------------------------------ only stale cells rerun
def cells_planned(workdir, config):
    result = snakemake(workdir, "-n", configfile=write_config(workdir / "edited.yaml", config))
    counts = job_counts(result.stdout)
    cells = sorted(p for p in planned_outputs(result.stdout, "toy_cell") if p.endswith("metrics.json"))
    return counts, cells


@pytest.mark.slow
def test_finished_run_plans_nothing(tiny_run):
    workdir, config_path, _ = tiny_run
    assert job_counts(snakemake(workdir, "-n", configfile=config_path).stdout) == {}


@pytest.mark.slow
def test_one_head_lr_change_reruns_only_that_heads_cells(tiny_run):
    workdir, _, _ = tiny_run
    config = load_config("tiny.yaml")
    config["toy"]["overrides"] = [{"where": {"head": "euclidean"}, "set": {"lr": 0.001}}]
    counts, cells = cells_planned(workdir, config)
    # The circle runs keep their own lr (toy.circle.train wins over overrides), so only grid + sweep cells rerun.
    expected = sorted(
        f"results/toy/corrected/{dataset}/mlp/euclidean/seed0/metrics.json"
        for dataset in ("equivalence", "equivalence-frac0.5")
    )
    assert cells == expected
    assert counts == {"toy_cell": 2, **DOWNSTREAM}


@pytest.mark.slow
def test_one_added_seed_runs_only_the_new_cells(tiny_run):
    workdir, _, _ = tiny_run
    config = load_config("tiny.yaml")
    config["toy"]["seeds"] = [0, 1]
    counts, cells = cells_planned(workdir, config)
    assert cells == sorted(
        f"results/toy/corrected/equivalence/mlp/{h}/seed1/metrics.json" for h in ("baseline", "euclidean")
    )
    assert counts == {"toy_cell": 2, **DOWNSTREAM}


@pytest.mark.slow
def test_edited_notebook_rerenders_only_itself(tiny_run, tmp_path):
    """A notebook is an input of its rule: touching one plans that notebook and the index, nothing else."""
    workdir, config_path, _ = tiny_run
    notebook = REPO / "notebooks/toy_pca.ipynb"
    stat = notebook.stat()
    try:
        os.utime(notebook, (stat.st_atime, time.time() + 5))
        counts = job_counts(snakemake(workdir, "-n", configfile=config_path).stdout)
    finally:
        os.utime(notebook, (stat.st_atime, stat.st_mtime))
    assert counts == {"notebook": 1, "index": 1, "all": 1}


# ------------------------------------------------------------------------------------- killed, then rerun
@pytest.mark.slow
def test_killed_job_reruns_cleanly_with_rerun_incomplete(tmp_path):
    config = load_config("tiny.yaml")
    config["toy"].update(data_efficiency=None, circle=None, heads=[{"distance": "euclidean"}])
    config["toy"]["train"]["epochs"] = 400
    config_path = write_config(tmp_path / "slow.yaml", config)
    target = "results/toy/corrected/equivalence/mlp/euclidean/seed0/metrics.json"
    log = tmp_path / "logs/toy/corrected/equivalence/mlp/euclidean/seed0.log"

    cmd = [
        str(BIN / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "-c",
        "1",
        target,
        "--configfile",
        str(config_path),
    ]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (log.exists() and "epoch 1:" in log.read_text()):
            time.sleep(0.2)
        assert log.exists() and "epoch 1:" in log.read_text(), "the cell never started training"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # a crash: no cleanup by snakemake or the job
        process.wait()
    assert not (tmp_path / target).exists(), "a killed job must not leave a complete-looking metrics.json"

    snakemake(tmp_path, "--unlock", configfile=config_path)
    rerun = snakemake(tmp_path, "--rerun-incomplete", target, configfile=config_path)
    assert job_counts(rerun.stdout + rerun.stderr).get("toy_cell") == 1
    record = json.loads((tmp_path / target).read_text())
    assert record["status"] == "ok" and record["metrics"]["epochs_run"] == 400
