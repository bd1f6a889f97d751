"""Dry runs of the cluster profiles from the repository root, as a user types them (`snakemake --profile slurm -n`).

They must plan exactly the paper preset's jobs (the reference: a profile-free dry run with
--configfile presets/paper.yaml), and a --configfile on the command line must replace the preset.
No scheduler is needed: a dry run never submits.
"""

import re

import pytest
import yaml
from cluster_helpers import REPO, TINY_CONFIG, run_snakemake, tiny_cells, tiny_config

pytestmark = pytest.mark.cluster

PROFILES = ("slurm", "lsf")


def planned_jobs(*args):
    """{rule: job count} of a forced dry run (every job of the grid, whatever results exist) from the repo root."""
    output = run_snakemake(REPO, "-n", "--forceall", "--nolock", "--quiet", "rules", *args)
    table = output.split("Job stats:", 1)[1].split("Reasons:", 1)[0]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE))
    counts.pop("total", None)
    return {rule: int(n) for rule, n in counts.items()}


@pytest.fixture(scope="module")
def paper_jobs():
    return planned_jobs("--configfile", REPO / "presets" / "paper.yaml")


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_plans_the_paper_grid(profile, paper_jobs):
    assert planned_jobs("--profile", profile) == paper_jobs
    preset = yaml.safe_load((REPO / "presets" / "paper.yaml").read_text())
    for family in preset["families"]:
        assert paper_jobs.get(f"{family}_cell", 0) > 0, family


@pytest.mark.parametrize("profile", PROFILES)
def test_command_line_configfile_replaces_the_preset(profile):
    jobs = planned_jobs("--profile", profile, "--configfile", TINY_CONFIG)
    assert jobs["toy_cell"] == len(tiny_cells(tiny_config()))
    assert "vision_cell" not in jobs
