# What each job asks a cluster scheduler for, derived from the `resources:` section of the config.
#
# Cell rules use it like this (the executor plugins read these resource names):
#
#     resources:
#         **cell_resources("vision"),
#
# which is gpu, cpus_per_task, mem_mb, runtime, lsf_extra, slurm_extra and gpu_model, each a callable of the
# cell's wildcards (dataset, model) and the attempt; `cell_resource(family, key)` gives one of them. The total
# cores go out as cpus_per_task (SLURM --cpus-per-task, LSF -n): the SLURM plugin ignores cpus_per_gpu once
# cpus_per_task is set, and the LSF plugin only knows the total.
#
# Why resources live in the config and not in the rules: the paper grid and the small default grid need very
# different requests, and a user adapting the workflow to a cluster edits one section instead of rule files.
# Resources are not rerun triggers, so editing them never reruns a finished cell.

config.setdefault("resources", {})
validate_section(config["resources"], "resources.schema.yaml", "resources")

# Light jobs that run on the submitting machine even under a cluster profile: queueing them would cost more than
# running them. The family rules files add their data downloads (`localrules:`), since compute nodes often have no
# internet.
LOCAL_RULE_NAMES = {"all", "aggregate", "notebook", "index"}
workflow.localrules(*LOCAL_RULE_NAMES)

# Per-attempt growth applies to these keys only: a job killed for memory or time gets more on its next attempt.
_RETRY_SCALED = ("mem_mb", "runtime")
RESOURCE_KEYS = (
    "gpu",
    "cpus_per_gpu",
    "cpus_per_task",
    "mem_mb",
    "runtime",
    "lsf_extra",
    "slurm_extra",
    "gpu_model",
)


def cell_request(family, dataset=None, model=None, attempt=1):
    """The resolved request of one cell: default < family < family.datasets[dataset] < family.models[model]."""
    section = config["resources"]
    family_section = section.get(family, {})
    request = dict(section["default"])
    request.update(
        {k: v for k, v in family_section.items() if k not in ("datasets", "models")}
    )
    request.update(family_section.get("datasets", {}).get(dataset, {}))
    request.update(family_section.get("models", {}).get(model, {}))
    for key in _RETRY_SCALED:
        scale = section["retry_scale"][key]
        request[key] = int(round(request[key] * scale ** (attempt - 1)))
    return request


def _derived(request, key):
    """Scheduler-specific values computed from a resolved request."""
    gpus = request["gpu"]
    if key == "cpus_per_task":
        # The total cores of the job: SLURM --cpus-per-task, LSF -n (one task per job).
        return gpus * request["cpus_per_gpu"] if gpus else request["cpus"]
    if key == "lsf_extra":
        # The LSF plugin has no GPU resource; -gpu needs its value quoted inside the bsub command line.
        options = ":".join(o for o in [f"num={gpus}", request["lsf_gpu_options"]] if o)
        return f"-gpu '{options}'" if gpus else ""
    if key in ("gpu_model", "slurm_extra"):
        return request[key] if gpus else ""
    return request[key]


def cell_resource(family, key):
    """A rule resource callable(wildcards, attempt) for `key` of a cell of `family`; see the top of this file."""
    if key not in RESOURCE_KEYS:
        raise ValueError(
            f"cell_resource: unknown key {key!r}; known: {', '.join(RESOURCE_KEYS)}"
        )

    def resource(wildcards, attempt):
        request = cell_request(
            family,
            dataset=getattr(wildcards, "dataset", None),
            model=getattr(wildcards, "model", None),
            attempt=attempt,
        )
        return _derived(request, key)

    return resource


def cell_resources(family):
    """All of a family's resource callables as a dict, for `resources: **cell_resources("toy")`."""
    return {
        key: cell_resource(family, key)
        for key in RESOURCE_KEYS
        if key != "cpus_per_gpu"
    }
