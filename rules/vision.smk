# The vision experiments: the distance-head grid of Miller-Golub et al. and the MNIST weight study of Baek et al.
#   data       data/vision/<dataset>/{data.npz, meta.json}      (offline sources; downloads only via vision_download)
#   cells      results/vision/<setting>/<dataset>/<label>/<head>/seed<k>/{metrics.json, curves.csv, emissions.csv, ...}
# A cell's hyperparameters: vision.defaults, then its grid entry's values, then matching vision.overrides
# (docs/vision.md; <label> is the backbone unless the entry names one).

from harmonic.vision.config import resolve_section as resolve_vision_section
from harmonic.vision.grid import data_rule_inputs, dataset_spec_json, workflow_cells

register_family(
    "vision",
    workflow_cells,
    notebooks=("vision_tables", "vision_radar", "vision_curves", "vision_weights"),
    resolve_section=resolve_vision_section,
)
VISION = config["vision"]


localrules:
    vision_download,  # compute nodes often have no internet (rules/resources.smk)


rule vision_download:
    input:
        script=cli_path("vision_data"),
    output:
        "data/downloads/{dataset}.json",
    log:
        "logs/vision/download/{dataset}.log",
    conda:
        "../envs/vision.yaml"
    params:
        spec=lambda wc: dataset_spec_json(VISION, wc.dataset),
    shell:
        "python -m harmonic.cli.vision_data --name {wildcards.dataset:q} --spec-json {params.spec:q}"
        " --download {output:q} > {log:q} 2>&1"


rule vision_data:
    input:
        lambda wc: data_rule_inputs(VISION, wc.dataset),
        script=cli_path("vision_data"),
    output:
        data="data/vision/{dataset}/data.npz",
        meta="data/vision/{dataset}/meta.json",
    log:
        "logs/vision/data/{dataset}.log",
    conda:
        "../envs/vision.yaml"
    params:
        spec=lambda wc: dataset_spec_json(VISION, wc.dataset),
    shell:
        "python -m harmonic.cli.vision_data --name {wildcards.dataset:q} --spec-json {params.spec:q}"
        " --out-dir $(dirname {output.data:q}) > {log:q} 2>&1"


rule vision_cell:
    input:
        data="data/vision/{dataset}/data.npz",
        meta="data/vision/{dataset}/meta.json",
        script=cli_path("vision_cell"),
    output:
        metrics=cell_output("vision", "metrics.json"),
        curves=cell_output("vision", "curves.csv"),
        emissions=cell_output("vision", "emissions.csv"),
    log:
        cell_log("vision"),
    conda:
        "../envs/vision.yaml"
    threads: cell_threads("vision")
    resources:
        **cell_resources("vision"),
    params:
        hp=cell_params_json("vision"),
        cell=cell_identity("vision"),
        emissions=emissions_params(),
    shell:
        "python -m harmonic.cli.vision_cell --data-dir $(dirname {input.data:q})"
        " --params-json {params.hp:q} --cell-json {params.cell:q}"
        " --emissions-json {params.emissions:q} --out-dir $(dirname {output.metrics:q}) > {log:q} 2>&1"
