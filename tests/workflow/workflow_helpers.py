"""Helpers for the workflow tests (imported by conftest.py and the tests): run snakemake as a subprocess in a temporary directory, parse its plans."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIGS = Path(__file__).resolve().parent / "configs"
BIN = Path(sys.executable).parent


def snakemake(workdir, *args, configfile=None, check=True, timeout=600, **kwargs):
    """Run `snakemake` on the repository's Snakefile with `workdir` as the working directory."""
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "-c", "2"]
    cmd += list(args)
    if configfile is not None:  # last: --configfile takes several values and would swallow targets
        cmd += ["--configfile", str(configfile)]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result


def job_counts(output):
    """The 'Job stats' table of a snakemake run or dry run as {rule: count} (empty when nothing is planned)."""
    counts, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            in_table = True
            continue
        if in_table:
            match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
            if match and match.group(1) != "total":
                counts[match.group(1)] = int(match.group(2))
            elif line.strip().startswith("total") or (counts and not line.strip()):
                break
    return counts


def planned_outputs(output, rule):
    """Output paths of every job of `rule` that a dry run (-n) plans."""
    paths, current = [], None
    for line in output.splitlines():
        stripped = line.strip()
        if re.match(r"^(local)?rule \w+:$", stripped):
            current = stripped.split()[-1].rstrip(":")
        elif current == rule and stripped.startswith("output:"):
            paths += [p.strip() for p in stripped[len("output:") :].split(",")]
    return paths


def load_config(name):
    with open(CONFIGS / name) as handle:
        return yaml.safe_load(handle)


def write_config(path, config):
    with open(path, "w") as handle:
        yaml.safe_dump(copy.deepcopy(config), handle, sort_keys=False)
    return path


def toy_grid_size(toy):
    """Number of toy cells a `toy:` section asks for, computed from the config (the tests' expectation)."""
    n = len(toy["tasks"]) * len(toy["models"]) * len(toy["heads"]) * len(toy["seeds"])
    sweep = toy.get("data_efficiency")
    if sweep:
        n += (
            len(sweep["tasks"])
            * len(sweep["models"])
            * len(sweep["fractions"])
            * len(toy["heads"])
            * len(sweep["seeds"])
        )
    circle = toy.get("circle")
    if circle:
        n += len(circle["runs"]) * len(circle["seeds"])
    two = toy.get("two_points")
    if two:
        n += len(two["heads"]) * len(two["seeds"])
    ablation = toy.get("ablation")
    if ablation:
        n += len(ablation["tasks"]) * len(ablation["models"]) * len(ablation["heads"]) * len(ablation["seeds"])
    n_sweep = toy.get("n_sweep")
    if n_sweep:
        n += len(n_sweep["tasks"]) * len(n_sweep["models"]) * len(n_sweep["ns"]) * len(n_sweep["seeds"])
    settings = toy.get("settings", ["corrected"])
    geneft = toy.get("geneft")
    if geneft:  # runs under its own settings only
        axes = ("tasks", "models", "fractions", "encoder_lrs", "decoder_lrs", "seeds")
        size = len(toy["heads"]) * len([s for s in settings if s in geneft["settings"]])
        for axis in axes:
            size *= len(geneft[axis])
        return n * len(settings) + size
    return n * len(settings)
