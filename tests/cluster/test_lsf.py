"""`--profile lsf` end to end, with recording stand-ins for the LSF commands (tests/cluster/lsf_standin/).

What this proves: with the queue and project a user sets in lsf/config.yaml, the lsf profile and
rules/resources.smk make the Snakemake LSF plugin call `bsub` with -q <queue>, -P <project>, -W <runtime
minutes>, -n <cores>, -R rusage[mem=<MB per core>] and, for GPU cells only, -gpu "num=<N>:<options>"; a failed
job is resubmitted with more memory and time; the run completes through bjobs polling and every cell finishes.
What it does not prove: that a real LSF accepts and schedules these requests (no LSF can run here); the stand-in
bsub runs each job at once on this machine.
"""

import json
import re

import pytest
import yaml
from cluster_helpers import (
    REPO,
    TINY_CONFIG,
    cell_results,
    model_of,
    retried,
    run_snakemake,
    tiny_cells,
    tiny_config,
    venv_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

STANDIN = REPO / "tests" / "cluster" / "lsf_standin" / "_lsf_standin.py"
LSF_COMMANDS = ("bsub", "bjobs", "bkill", "badmin", "lsclusters", "bhist")
FAILING_MODEL = "transformer"  # its first attempt fails, so its second must ask for more
USER_SETTINGS = ("lsf_queue", "lsf_project")


def user_edited_profile(directory):
    """lsf/config.yaml as a user adapts it: the commented queue and project lines of its edit block switched on."""
    text = (REPO / "lsf" / "config.yaml").read_text()
    settings = {}
    for key in USER_SETTINGS:
        pattern = re.compile(rf"^  # ({key}): (\S+)$", re.MULTILINE)
        found = pattern.findall(text)
        assert len(found) == 1, f"lsf/config.yaml: expected one commented `{key}:` line under default-resources"
        settings[key] = found[0][1]
        text = pattern.sub(r"  \1: \2", text)
    directory.mkdir()
    (directory / "config.yaml").write_text(text)
    return directory, settings


def bsub_calls(state_dir):
    calls = [json.loads(line) for line in (state_dir / "calls.jsonl").read_text().splitlines()]
    return [call["argv"] for call in calls if call["command"] == "bsub"]


def option(argv, flag):
    values = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]
    return values


@pytest.fixture(scope="module")
def lsf_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lsf")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for command in LSF_COMMANDS:
        (bin_dir / command).symlink_to(STANDIN)
    profile, settings = user_edited_profile(root / "profile")
    workdir = root / "work"
    workdir.mkdir()
    env = venv_env(
        LSF_STANDIN_DIR=str(root / "state"),
        LSF_STANDIN_FAIL_ONCE=f"*model={FAILING_MODEL}*",
    )
    env["PATH"] = f"{bin_dir}:{env['PATH']}"  # the stand-ins first; the cells' python after them
    output = run_snakemake(
        workdir,
        "results/tables/toy.csv",
        "--profile",
        profile,
        "--configfile",
        TINY_CONFIG,
        "--seconds-between-status-checks",
        "2",
        env=env,
    )
    return {"output": output, "calls": bsub_calls(root / "state"), "settings": settings, "workdir": workdir}


def test_bsub_gets_queue_project_time_cores_memory_and_gpus(lsf_run):
    config = tiny_config()
    cells = tiny_cells(config)
    schema = yaml.safe_load((REPO / "schemas" / "resources.schema.yaml").read_text())
    gpu_options = schema["properties"]["default"]["properties"]["lsf_gpu_options"]["default"]

    attempts = {}
    for argv in lsf_run["calls"]:
        attempts.setdefault(model_of(option(argv, "-J")[0], list(cells)), []).append(argv)
    assert {model: len(calls) for model, calls in attempts.items()} == {
        model: 2 if model == FAILING_MODEL else 1 for model in cells
    }, lsf_run["output"][-3000:]

    for model, calls in attempts.items():
        for attempt, argv in enumerate(calls, start=1):
            request = retried(cells[model], config, attempt)
            where = f"{model}, attempt {attempt}: {argv[:-1]}"
            assert option(argv, "-q") == [lsf_run["settings"]["lsf_queue"]], where
            assert option(argv, "-P") == [lsf_run["settings"]["lsf_project"]], where
            assert option(argv, "-W") == [str(request["runtime"])], where
            assert option(argv, "-n") == [str(request["cpus_per_task"])], where
            rusage = [r for r in option(argv, "-R") if r.startswith("rusage[mem=")]
            assert len(rusage) == 1, where
            per_core_mb = float(rusage[0][len("rusage[mem=") : -1])
            assert per_core_mb == pytest.approx(request["mem_mb"] / request["cpus_per_task"]), where
            expected_gpu = [f"num={request['gpu']}:{gpu_options}"] if request["gpu"] else []
            assert option(argv, "-gpu") == expected_gpu, where
            assert option(argv, "-cwd") == [str(lsf_run["workdir"])], where


def test_every_cell_finishes(lsf_run):
    results = cell_results(lsf_run["workdir"])
    assert len(results) == len(tiny_cells(tiny_config()))
    assert all(cell["status"] == "ok" for cell in results.values())
    assert (lsf_run["workdir"] / "results" / "tables" / "toy.csv").exists()
