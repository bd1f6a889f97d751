"""Shared pieces of the cluster tests: running Snakemake under a profile with a hard time limit, the tiny test
grid (tests/cluster/tiny.yaml) and what each of its cells should ask a scheduler for, and reading cell results."""

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "tests" / "cluster" / "tiny.yaml"
SNAKEMAKE_TIMEOUT_S = 240  # per Snakemake run; `timeout -k 30` kills a hung scheduler poll for sure


def venv_env(**extra):
    """The environment of a workflow run: the cells' `python` must be this interpreter (it has the packages)."""
    env = dict(os.environ, **extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_snakemake(workdir, *args, env=None, timeout=SNAKEMAKE_TIMEOUT_S):
    """Run the repository's workflow in `workdir`; fail the test with Snakemake's output if it fails."""
    command = ["timeout", "-k", "30", str(timeout), sys.executable, "-m", "snakemake"]
    command += ["--snakefile", str(REPO / "Snakefile"), *map(str, args)]
    result = subprocess.run(command, cwd=workdir, env=env or venv_env(), capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(
            f"snakemake exited {result.returncode} (124/137: timed out)\n{' '.join(command)}\n{output[-6000:]}"
        )
    return output


def tiny_config():
    return yaml.safe_load(TINY_CONFIG.read_text())


def write_config(path, config):
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def with_override(config, where, values):
    """A copy of the tiny config where the cells matching `where` train with `values` changed."""
    changed = copy.deepcopy(config)
    changed["toy"]["overrides"] = [*changed["toy"]["overrides"], {"where": where, "set": values}]
    return changed


def tiny_cells(config):
    """The cells of the tiny grid: {model: expected request}, resolved by hand from its `resources:` section.

    Deliberately simple and separate from rules/resources.smk (the code under test): the tiny config only uses a
    family block and per-model blocks, and every cell of a model shares its request.
    """
    toy = config["toy"]
    assert len(toy["tasks"]) == 1 and len(toy["heads"]) == 1 and len(toy["seeds"]) == 1, "one cell per model"
    section = config["resources"]
    cells = {}
    for model in toy["models"]:
        request = {k: v for k, v in section["toy"].items() if k != "models"}
        request.update(section["toy"].get("models", {}).get(model, {}))
        gpus = request["gpu"]
        request["cpus_per_task"] = gpus * request["cpus_per_gpu"] if gpus else request["cpus"]
        cells[model] = request
    return cells


def retried(request, config, attempt):
    """The request of a later attempt: memory and time grow by the config's retry_scale per failed attempt."""
    scale = config["resources"]["retry_scale"]
    grown = dict(request)
    for key in ("mem_mb", "runtime"):
        grown[key] = int(round(request[key] * scale[key] ** (attempt - 1)))
    return grown


def cell_results(workdir):
    """{cell directory: what must not depend on where the cell ran} for every finished cell under workdir."""
    results = {}
    for metrics_file in sorted(Path(workdir, "results", "toy").rglob("metrics.json")):
        record = json.loads(metrics_file.read_text())
        curves = (metrics_file.parent / "curves.csv").read_text()
        cell_dir = str(metrics_file.parent.relative_to(workdir))
        results[cell_dir] = {
            "status": record["status"],
            "hyperparameters": record["hyperparameters"],
            "metrics": record["metrics"],
            "curves": curves,
        }
    return results


def model_of(text, models):
    """Which model's cell a job name, comment or log path belongs to (the model is one wildcard of the cell)."""
    found = [m for m in models if re.search(rf"(^|[_=/]){re.escape(m)}([_.,/]|$)", text)]
    assert len(found) == 1, f"cannot tell the cell of {text!r} among {models}"
    return found[0]
