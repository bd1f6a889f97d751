"""The toy family's cells, from the config's `toy:` section (rules/toy.smk registers them with the workflow).

Six studies (figures of Baek et al.) share the family; every cell records its study as cell.study:
    grid             tasks x models x heads x seeds (Fig. 2, 3a, 3c) -> results/toy/<setting>/<task>/<model>/<head>/seed<k>/
    data_efficiency  the same at several train fractions (Fig. 3b)   -> .../<task>-frac<f>/<model>/<head>/seed<k>/
    circle           named MLP runs on modular addition (Fig. 4)     -> .../circle/<run label>/<head>/seed<k>/
    two_points       one 2 x 2 layer on two fixed points (Fig. 1)    -> .../two_points/layer/<head>/seed<k>/
    ablation         l2 / dot product x HarMax / softmax (Fig. 6)    -> .../<task>-ablation/<model>/<head>/seed<k>/
    n_sweep          harmonic exponent n = 1 .. 10 (App. E)          -> .../<task>-nsweep/<model>/euclidean-n<n>/seed<k>/
A cell's hyperparameters: the section's `train`, then every matching entry of `overrides` (which can match the
setting: that is how faithful and corrected differ), then (circle, two_points) the study's own `train`, so a case
study keeps the paper's values whatever the grid overrides say.
"""

from harmonic.settings import check_settings
from harmonic.toy.config import SECTION_KEYS, section_value
from harmonic.toy.models import resolve_toy_head, toy_head_label


def apply_overrides(base, overrides, match):
    """`base` updated by the `set` of every override whose `where` keys all equal the cell's `match` values."""
    values = dict(base)
    for override in overrides:
        if all(match.get(key) == value for key, value in override["where"].items()):
            values.update(override["set"])
    return values


def make_cell(section, device, setting, study, dataset, task, model, head_spec, seed, train=None, model_label=None):
    """One cell: its path parts (setting, dataset, model, head, seed), what it is, and its resolved hyperparameters."""
    head = resolve_toy_head(head_spec)
    label = toy_head_label(head)
    match = dict(setting=setting, study=study, task=task, model=model, head=label, seed=seed)
    params = {key: section_value(section, key) for key in SECTION_KEYS}
    params.update(apply_overrides(section["train"], section_value(section, "overrides"), match))
    params.update(train or {})
    params.update(setting=setting, study=study, task=task, model=model, head=head, seed=seed, device=device)
    if study == "data_efficiency":
        params["train_fraction"] = float(dataset.rsplit("-frac", 1)[1])
    return dict(
        setting=setting,
        dataset=dataset,
        model=model_label or model,
        head=label,
        seed=seed,
        study=study,
        task=task,
        train_fraction=params["train_fraction"],
        params=params,
    )


def toy_cells(section, device="cpu"):
    """Every cell the section asks for, in config order, once per setting. A bad head spec raises ValueError naming
    its key."""
    cells = []
    for setting in check_settings(section_value(section, "settings"), "toy.settings"):
        cells += setting_cells(section, device, setting)
    return cells


def check_head(spec, key):
    """A head spec resolves, or ValueError naming its config key."""
    try:
        resolve_toy_head(spec)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def setting_cells(section, device, setting):
    """The cells of one setting (faithful | corrected), study by study."""
    for i, spec in enumerate(section["heads"]):
        check_head(spec, f"toy.heads[{i}]")
    cells = []
    for study in (grid_cells, data_efficiency_cells, circle_cells, two_point_cells, ablation_cells, n_sweep_cells):
        cells += study(section, device, setting)
    return cells


def grid_cells(section, device, setting):
    cells = []
    for task in section["tasks"]:
        for model in section["models"]:
            for spec in section["heads"]:
                for seed in section["seeds"]:
                    cells.append(make_cell(section, device, setting, "grid", task, task, model, spec, seed))
    return cells


def data_efficiency_cells(section, device, setting):
    sweep, cells = section.get("data_efficiency"), []
    for task in sweep["tasks"] if sweep else []:
        for fraction in sweep["fractions"]:
            for model in sweep["models"]:
                for spec in section["heads"]:
                    for seed in sweep["seeds"]:
                        dataset = f"{task}-frac{fraction:g}"
                        cells.append(
                            make_cell(section, device, setting, "data_efficiency", dataset, task, model, spec, seed)
                        )
    return cells


def circle_cells(section, device, setting):
    circle, cells = section.get("circle"), []
    for i, run in enumerate(circle["runs"] if circle else []):
        check_head(run["head"], f"toy.circle.runs[{i}].head")
        train = dict(circle.get("train") or {}, **run.get("train", {}))
        for seed in circle["seeds"]:
            cells.append(
                make_cell(
                    section,
                    device,
                    setting,
                    "circle",
                    "circle",
                    "modular_addition",
                    run["model"],
                    run["head"],
                    seed,
                    train,
                    model_label=run["label"],
                )
            )
    return cells


def two_point_cells(section, device, setting):
    two, cells = section.get("two_points"), []
    for i, spec in enumerate(two["heads"] if two else []):
        check_head(spec, f"toy.two_points.heads[{i}]")
        for seed in two["seeds"]:
            cell = make_cell(section, device, setting, "two_points", "two_points", "two_points", "layer", spec, seed)
            # Only what the two-point layer uses: the effective exponent and its own steps / lr.
            params = cell["params"]
            keep = ("setting", "study", "task", "model", "head", "seed", "device", "threads", "distance_power")
            cell["params"] = dict({key: params[key] for key in keep}, **two["train"])
            cell["train_fraction"] = None
            cells.append(cell)
    return cells


def ablation_cells(section, device, setting):
    ablation, cells = section.get("ablation"), []
    if not ablation:
        return cells
    for i, spec in enumerate(ablation["heads"]):
        check_head(spec, f"toy.ablation.heads[{i}]")
    for task in ablation["tasks"]:
        for model in ablation["models"]:
            for spec in ablation["heads"]:
                for seed in ablation["seeds"]:
                    dataset = f"{task}-ablation"
                    cells.append(make_cell(section, device, setting, "ablation", dataset, task, model, spec, seed))
    return cells


def n_sweep_cells(section, device, setting):
    sweep, cells = section.get("n_sweep"), []
    for task in sweep["tasks"] if sweep else []:
        for model in sweep["models"]:
            for n in sweep["ns"]:
                for seed in sweep["seeds"]:
                    spec = {"distance": "euclidean", "n": float(n)}
                    cells.append(
                        make_cell(section, device, setting, "n_sweep", f"{task}-nsweep", task, model, spec, seed)
                    )
    return cells
