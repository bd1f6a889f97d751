"""`--profile slurm` against a real single-node SLURM cluster (slurmctld + slurmd + munge, started and stopped by
tests/cluster/slurm_cluster.sh, two fake GPUs through GRES), running the tiny grid of tests/cluster/tiny.yaml.

It proves, end to end: each cell is submitted with the GPU, CPU, memory and time request its config asks for
(read back from the scheduler with `scontrol show job`), the results equal a local run's, and changing one
value resubmits only the cells it reaches. Skipped only when not root or when apt cannot provide slurm-wlm;
in CI (CI set; .ci/run sets it) those skips fail the run (tests/conftest.py).
"""

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from cluster_helpers import (
    REPO,
    TINY_CONFIG,
    cell_results,
    model_of,
    run_snakemake,
    tiny_cells,
    tiny_config,
    with_override,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

CLUSTER_SCRIPT = REPO / "tests" / "cluster" / "slurm_cluster.sh"
TARGET = "results/tables/toy.csv"  # the cells and their table; the figure notebooks add nothing here
FAST_POLLING = [
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "2",
]


def slurm_installed():
    return all(shutil.which(daemon) for daemon in ("slurmctld", "slurmd", "munged"))


@pytest.fixture(scope="module")
def slurm_cluster():
    if os.geteuid() != 0:
        pytest.skip("needs root to install and start slurmctld, slurmd and munged")
    if not slurm_installed() and not shutil.which("apt-get"):
        pytest.skip("slurm-wlm is not installed and there is no apt-get to install it")
    try:
        started = subprocess.run([CLUSTER_SCRIPT, "start"], capture_output=True, text=True, timeout=1800)
        if started.returncode != 0 and not slurm_installed():
            pytest.skip(f"apt cannot provide slurm-wlm and munge:\n{started.stdout}{started.stderr}")
        assert started.returncode == 0, f"slurm_cluster.sh start failed:\n{started.stdout}{started.stderr}"
        yield
    finally:
        subprocess.run([CLUSTER_SCRIPT, "stop"], timeout=120)


def slurm_profile_run(workdir, configfile):
    """The user's command (`--profile slurm`) with the tiny config in place of the paper preset."""
    output = run_snakemake(
        workdir,
        TARGET,
        "--profile",
        REPO / "slurm",
        "--configfile",
        configfile,
        *FAST_POLLING,
    )
    return output, re.findall(r"submitted with SLURM jobid (\d+)", output)


def scontrol_job(job_id):
    """The scheduler's record of a job (kept after it ends: MinJobAge in slurm_cluster.sh), as a dict."""
    line = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return dict(re.findall(r"(\w[\w/:]*)=(\S*)", line))


def minutes(time_limit):
    hours, mins, secs = (int(x) for x in time_limit.split("-")[-1].split(":"))
    return hours * 60 + mins + secs / 60


@pytest.fixture(scope="module")
def runs(slurm_cluster, tmp_path_factory):
    """One local run and one `--profile slurm` run of the tiny grid, in their own directories, side by side (the
    SLURM run mostly waits on the scheduler's polling)."""
    local = tmp_path_factory.mktemp("local")
    remote = tmp_path_factory.mktemp("slurm")
    with ThreadPoolExecutor(max_workers=1) as pool:
        local_run = pool.submit(run_snakemake, local, TARGET, "-c", "1", "--configfile", TINY_CONFIG)
        output, job_ids = slurm_profile_run(remote, TINY_CONFIG)
        local_run.result()
    return {"local": local, "remote": remote, "output": output, "job_ids": job_ids}


def test_each_cell_is_submitted_with_its_resources(runs):
    expected = tiny_cells(tiny_config())
    jobs = {}
    for job_id in runs["job_ids"]:
        job = scontrol_job(job_id)
        jobs[model_of(job["Comment"], list(expected))] = job
    assert set(jobs) == set(expected), runs["output"][-3000:]  # the table is not a job: it ran locally
    assert "localrule aggregate:" in runs["output"]
    for model, request in expected.items():
        job = jobs[model]
        assert job["JobState"] == "COMPLETED", (model, job)
        assert minutes(job["TimeLimit"]) == request["runtime"], (model, job["TimeLimit"])
        assert job["MinMemoryNode"] == f"{request['mem_mb']}M", (model, job["MinMemoryNode"])
        assert int(job["NumCPUs"]) == request["cpus_per_task"], (model, job["NumCPUs"])
        if request["gpu"]:
            assert job.get("TresPerJob") == f"gres:gpu:{request['gpu']}", (model, job)
        else:
            assert "gpu" not in job.get("TresPerJob", ""), (model, job)
        assert job["WorkDir"] == str(runs["remote"])


def test_results_equal_a_local_run(runs):
    local = cell_results(runs["local"])
    remote = cell_results(runs["remote"])
    assert len(local) == len(tiny_cells(tiny_config()))
    assert remote == local
    assert all(cell["status"] == "ok" for cell in remote.values())


def test_changed_value_resubmits_only_its_cells(runs, tmp_path):
    remote = runs["remote"]
    before = cell_results(remote)
    changed_model = "transformer"
    config = with_override(tiny_config(), {"model": changed_model}, {"lr": 0.003})
    output, job_ids = slurm_profile_run(remote, write_config(tmp_path / "changed.yaml", config))

    models = list(tiny_cells(config))
    resubmitted = [model_of(scontrol_job(job_id)["Comment"], models) for job_id in job_ids]
    assert resubmitted == [changed_model], output[-3000:]
    after = cell_results(remote)
    for cell_dir, result in after.items():
        if f"/{changed_model}/" in cell_dir:
            assert result["hyperparameters"]["lr"] == 0.003
            assert result != before[cell_dir]
        else:
            assert result == before[cell_dir]
