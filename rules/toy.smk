# The algorithmic (toy) experiments of Baek et al.: one job per cell, six studies in one family (cell.study).
#   grid            tasks x models x heads x seeds                      -> results/toy/<setting>/<task>/<model>/<head>/seed<k>/
#   data_efficiency the same, at several train fractions                -> results/toy/<setting>/<task>-frac<f>/...
#   circle          modular addition, a few named MLP runs (Fig. 4)      -> results/toy/<setting>/circle/<run label>/...
#   two_points      one 2 x 2 layer on two fixed points (Fig. 1)         -> results/toy/<setting>/two_points/layer/...
#   ablation        l2 / dot product x HarMax / softmax heads (Fig. 6)   -> results/toy/<setting>/<task>-ablation/...
#   n_sweep         harmonic exponent n = 1 .. 10 (App. E)               -> results/toy/<setting>/<task>-nsweep/...
# How a cell's hyperparameters resolve: harmonic/toy/grid.py.

from harmonic.toy.grid import toy_cells

validate_family("toy")

try:
    TOY_CELLS = toy_cells(config["toy"], device=config["device"])
except ValueError as exc:
    raise WorkflowError(f"config {exc}") from None
register_cells("toy", TOY_CELLS)
FAMILY_NOTEBOOKS.update(
    {
        name: "results/tables/toy.parquet"
        for name in (
            "toy_ev",
            "toy_grokking",
            "toy_data_efficiency",
            "toy_pca",
            "toy_circle",
            "toy_studies",
        )
    }
)


# Scheduler requests from the `resources:` config section when rules/resources.smk is included (cluster profiles).
TOY_RESOURCES = cell_resources("toy") if "cell_resources" in globals() else {}


rule toy_cell:
    input:
        script=cli_path("toy_cell"),
    output:
        metrics=cell_path("toy", "metrics.json"),
        curves=cell_path("toy", "curves.csv"),
        emissions=cell_path("toy", "emissions.csv"),
        embedding=cell_path("toy", "embedding.npy"),
    log:
        cell_log("toy"),
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        **TOY_RESOURCES,
    params:
        hp=cell_params("toy"),
        cell=cell_identity("toy"),
        emissions=emissions_params(),
    shell:
        "python -m harmonic.cli.toy_cell --params-json {params.hp:q} --cell-json {params.cell:q}"
        " --emissions-json {params.emissions:q} --out-dir $(dirname {output.metrics:q}) > {log:q} 2>&1"
