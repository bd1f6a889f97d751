"""rules/resources.smk through the workflow's dry run: how a cell's request resolves from the `resources:` section
(default < family < dataset < model, GPU requests to the LSF -gpu string), and that a bad section stops the run
with a message naming the bad key."""

import re

import pytest
from cluster_helpers import TINY_CONFIG, run_snakemake, tiny_config, write_config

pytestmark = pytest.mark.cluster


def planned_resources(workdir, configfile):
    """{model: {resource: value}} of the toy cells a dry run plans."""
    output = run_snakemake(workdir, "-n", "--nolock", "--configfile", configfile)
    planned = {}
    for block in output.split("\nrule ")[1:]:
        if not block.startswith("toy_cell:"):
            continue
        model = re.search(r"wildcards: .*\bmodel=([^,\s]+)", block).group(1)
        line = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE).group(1)
        planned[model] = dict(item.split("=", 1) for item in line.split(", "))
    return planned


def test_request_resolves_default_family_dataset_model(tmp_path):
    config = tiny_config()
    task = config["toy"]["tasks"][0]
    config["resources"] = {
        # config.yaml's toy block (cpus, mem_mb, runtime) lies between these: the test config is layered over it
        "default": {"mem_mb": 1111, "runtime": 11, "cpus_per_gpu": 5, "lsf_gpu_options": "mode=shared"},
        "toy": {
            "cpus": 3,
            "runtime": 22,
            "datasets": {task: {"mem_mb": 3333, "runtime": 33}},
            "models": {"transformer": {"runtime": 44, "gpu": 1}},
        },
    }
    planned = planned_resources(tmp_path, write_config(tmp_path / "resolution.yaml", config))

    mlp, transformer = planned["mlp"], planned["transformer"]
    assert (mlp["mem_mb"], mlp["runtime"], mlp["gpu"], mlp["cpus_per_task"]) == ("3333", "33", "0", "3")
    assert mlp["lsf_extra"] == ""
    assert (transformer["mem_mb"], transformer["runtime"], transformer["gpu"]) == ("3333", "44", "1")
    assert transformer["cpus_per_task"] == "5"  # 1 GPU x cpus_per_gpu
    assert transformer["lsf_extra"] == "-gpu 'num=1:mode=shared'"


def test_tiny_config_plans_its_own_requests(tmp_path):
    planned = planned_resources(tmp_path, TINY_CONFIG)
    assert planned["transformer"]["gpu"] != "0" and planned["mlp"]["gpu"] == "0"


def test_family_threads_set_the_job_threads_and_the_cells_torch_threads(tmp_path):
    """One key, config toy.threads, gives both what the job asks for (rule threads) and what the cell hands
    torch.set_num_threads (params["threads"])."""
    config = tiny_config()
    config["toy"]["threads"] = 3
    output = run_snakemake(
        tmp_path, "-n", "--nolock", "-c", "8", "-p", "--configfile", write_config(tmp_path / "threads.yaml", config)
    )
    blocks = [block for block in output.split("\nrule ")[1:] if block.startswith("toy_cell:")]
    assert blocks
    for block in blocks:
        assert re.search(r"^\s+threads: 3$", block, re.MULTILINE), block
        assert '"threads": 3' in block, block  # the printed shell command's --params-json


@pytest.mark.parametrize(
    "section, named",
    [
        ({"toy": {"gpus": 1}}, "gpus"),
        ({"toy": {"gpu": -1}}, "-1"),
        ({"toy": {"datasets": {"modular_addition": {"models": {}}}}}, "models"),
        ({"retry_scale": {"mem_mb": 0.5}}, "0.5"),
    ],
)
def test_bad_resources_section_is_a_clear_error(tmp_path, section, named):
    config = tiny_config()
    config["resources"] = section
    with pytest.raises(AssertionError) as failed:
        run_snakemake(tmp_path, "-n", "--nolock", "--configfile", write_config(tmp_path / "bad.yaml", config))
    message = str(failed.value)
    assert "resources.schema.yaml" in message or "resources.smk" in message
    assert named in message
