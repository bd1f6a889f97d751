"""Shared fixture of the workflow tests: the tiny config, run for real once per session."""

import pytest
from workflow_helpers import load_config, snakemake, write_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny config, run for real once (cells, table, notebooks, index) in a temporary directory."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    config = write_config(workdir / "config.yaml", load_config("tiny.yaml"))
    result = snakemake(workdir, configfile=config)
    return workdir, config, result
