# The algorithmic (toy) experiments of Baek et al.: one job per cell, three studies in one family.
#   grid            tasks x models x heads x seeds                      -> results/toy/<task>/<model>/<head>/seed<k>/
#   data_efficiency the same, at several train fractions                -> results/toy/<task>-frac<f>/...
#   circle          modular addition, a few named MLP runs (Fig. 4)      -> results/toy/circle/<run label>/...


validate_family("toy")

TOY = config["toy"]
TOY_DATA_KEYS = ("split", "n_samples", "train_fraction", "embed_dim", "threads")


def toy_cell(study, dataset, task, model, head_spec, seed, train, model_label=None):
    """One toy cell: its path parts, what it is, and its fully resolved hyperparameters."""
    head = resolved_head(head_spec)
    label = harmonic.head_label(head)
    match = dict(study=study, task=task, model=model, head=label, seed=seed)
    hyper = apply_overrides(TOY["train"], TOY["overrides"], match)
    hyper.update(train)  # study-level values (a circle run's own train) win
    params = {key: TOY[key] for key in TOY_DATA_KEYS}
    params.update(hyper, task=task, model=model, head=head, seed=seed)
    params["device"] = config["device"]
    if study == "data_efficiency":
        params["train_fraction"] = float(dataset.rsplit("-frac", 1)[1])
    return dict(
        dataset=dataset,
        model=model_label or model,
        head=label,
        seed=seed,
        study=study,
        task=task,
        train_fraction=params["train_fraction"],
        params=params,
    )


def toy_cells():
    cells = []
    for task in TOY["tasks"]:
        for model in TOY["models"]:
            for spec in TOY["heads"]:
                for seed in TOY["seeds"]:
                    cells.append(toy_cell("grid", task, task, model, spec, seed, {}))
    sweep = TOY.get("data_efficiency")
    if sweep:
        for task in sweep["tasks"]:
            for fraction in sweep["fractions"]:
                for model in sweep["models"]:
                    for spec in TOY["heads"]:
                        for seed in sweep["seeds"]:
                            dataset = f"{task}-frac{fraction:g}"
                            cells.append(
                                toy_cell(
                                    "data_efficiency",
                                    dataset,
                                    task,
                                    model,
                                    spec,
                                    seed,
                                    {},
                                )
                            )
    circle = TOY.get("circle")
    if circle:
        for i, run in enumerate(circle["runs"]):
            checked_head_label(run["head"], f"toy.circle.runs[{i}].head")
            train = dict(circle.get("train", {}), **run.get("train", {}))
            for seed in circle["seeds"]:
                cells.append(
                    toy_cell(
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


register_cells("toy", toy_cells())
FAMILY_NOTEBOOKS.update(
    {
        name: "results/tables/toy.parquet"
        for name in (
            "toy_ev",
            "toy_grokking",
            "toy_data_efficiency",
            "toy_pca",
            "toy_circle",
        )
    }
)


# Scheduler requests from the `resources:` config section when rules/resources.smk is included (cluster profiles).
TOY_RESOURCES = cell_resources("toy") if "cell_resources" in globals() else {}


rule toy_cell:
    output:
        metrics=cell_path("toy", "metrics.json"),
        curves=cell_path("toy", "curves.csv"),
        emissions=cell_path("toy", "emissions.csv"),
        embedding=cell_path("toy", "embedding.npy"),
    params:
        hp=cell_params("toy"),
        cell=cell_identity("toy"),
        emissions=emissions_params(),
    log:
        cell_log("toy"),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        **TOY_RESOURCES,
    shell:
        "python {SCRIPTS}/toy_cell.py --params-json {params.hp:q} --cell-json {params.cell:q}"
        " --emissions-json {params.emissions:q} --out-dir $(dirname {output.metrics:q}) > {log:q} 2>&1"
