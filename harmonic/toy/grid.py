"""The toy family's cells, from the config's `toy:` section (rules/toy.smk registers them with the workflow).

Three studies share the family:
    grid             tasks x models x heads x seeds              -> results/toy/<setting>/<task>/<model>/<head>/seed<k>/
    data_efficiency  the same at several train fractions          -> results/toy/<setting>/<task>-frac<f>/<model>/<head>/seed<k>/
    circle           named MLP runs on modular addition (Fig. 4)  -> results/toy/<setting>/circle/<run label>/<head>/seed<k>/
A cell's hyperparameters: the section's `train`, then every matching entry of `overrides`, then (circle only) the
study's and the run's own `train`, so the case study keeps the paper's values whatever the grid overrides say.
"""

import harmonic
from harmonic.settings import check_settings

DATA_KEYS = ("split", "n_samples", "train_fraction", "embed_dim", "threads")


def apply_overrides(base, overrides, match):
    """`base` updated by the `set` of every override whose `where` keys all equal the cell's `match` values."""
    values = dict(base)
    for override in overrides:
        if all(match.get(key) == value for key, value in override["where"].items()):
            values.update(override["set"])
    return values


def make_cell(section, device, setting, study, dataset, task, model, head_spec, seed, train=None, model_label=None):
    """One cell: its path parts (setting, dataset, model, head, seed), what it is, and its resolved hyperparameters."""
    head = harmonic.resolve_head_spec(head_spec)
    label = harmonic.head_label(head)
    match = dict(setting=setting, study=study, task=task, model=model, head=label, seed=seed)
    params = {key: section[key] for key in DATA_KEYS}
    params.update(apply_overrides(section["train"], section.get("overrides", []), match))
    params.update(train or {})
    params.update(setting=setting, task=task, model=model, head=head, seed=seed, device=device)
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
    for setting in check_settings(section.get("settings", ["corrected"]), "toy.settings"):
        cells += setting_cells(section, device, setting)
    return cells


def setting_cells(section, device, setting):
    """The cells of one setting (faithful | corrected): the grid, the data-efficiency sweep and the circle."""
    cells = []
    for task in section["tasks"]:
        for model in section["models"]:
            for spec in section["heads"]:
                for seed in section["seeds"]:
                    cells.append(make_cell(section, device, setting, "grid", task, task, model, spec, seed))

    sweep = section.get("data_efficiency")
    if sweep:
        for task in sweep["tasks"]:
            for fraction in sweep["fractions"]:
                for model in sweep["models"]:
                    for spec in section["heads"]:
                        for seed in sweep["seeds"]:
                            dataset = f"{task}-frac{fraction:g}"
                            cells.append(
                                make_cell(
                                    section, device, setting, "data_efficiency", dataset, task, model, spec, seed
                                )
                            )

    circle = section.get("circle")
    if circle:
        for i, run in enumerate(circle["runs"]):
            try:
                harmonic.resolve_head_spec(run["head"])
            except ValueError as exc:
                raise ValueError(f"toy.circle.runs[{i}].head: {exc}") from None
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
