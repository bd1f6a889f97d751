# The algorithmic (toy) experiments of Baek et al.: one job per cell, six studies in one family (cell.study).
#   grid            tasks x models x heads x seeds                      -> results/toy/<setting>/<task>/<model>/<head>/seed<k>/
#   data_efficiency the same, at several train fractions                -> results/toy/<setting>/<task>-frac<f>/...
#   circle          modular addition, a few named MLP runs (Fig. 4)      -> results/toy/<setting>/circle/<run label>/...
#   two_points      one 2 x 2 layer on two fixed points (Fig. 1)         -> results/toy/<setting>/two_points/layer/...
#   ablation        l2 / dot product x HarMax / softmax heads (Fig. 6)   -> results/toy/<setting>/<task>-ablation/...
#   n_sweep         harmonic exponent n = 1 .. 10 (App. E)               -> results/toy/<setting>/<task>-nsweep/...
#   geneft          train fraction x encoder lr x decoder lr (GenEFT)    -> results/toy/<setting>/<task>-geneft-f.../...
# and downstream of the trained models, one stitching job per model (toy_stitch, harmonic/toy/stitching.py):
#   stitch          the model stitched into its partners                 -> <the model's cell dir>/stitch/
# How a cell's hyperparameters resolve: harmonic/toy/grid.py.

from harmonic.toy.config import resolve_section as resolve_toy_section
from harmonic.toy.grid import toy_cells
from harmonic.toy.stitching import stitching_partners

TOY_CELLS = register_family(
    "toy",
    toy_cells,
    notebooks=(
        "toy_ev",
        "toy_grokking",
        "toy_data_efficiency",
        "toy_pca",
        "toy_circle",
        "toy_studies",
    ),
    resolve_section=resolve_toy_section,
)
TOY_STITCH = config["toy"].get("stitching") or {}
_toy_stitched = [c for c in TOY_CELLS if c["study"] in TOY_STITCH.get("studies", [])]
TOY_STITCH_PARTNERS = {  # front model's cell dir -> [(kind, partner's cell dir)], models with a partner only
    cell_dir("toy", c): [
        (kind, cell_dir("toy", other))
        for kind, other in stitching_partners(c, _toy_stitched, TOY_STITCH["partners"])
    ]
    for c in _toy_stitched
}
TOY_STITCH_PARTNERS = {
    front: pairs for front, pairs in TOY_STITCH_PARTNERS.items() if pairs
}
FAMILY_RECORDS["toy"] = [
    f"{front}/stitch/metrics.json" for front in TOY_STITCH_PARTNERS
]
if FAMILY_RECORDS["toy"]:
    FAMILY_NOTEBOOKS["toy_stitching"] = "results/tables/toy.parquet"
if any(c["study"] == "geneft" for c in TOY_CELLS):
    FAMILY_NOTEBOOKS["toy_geneft"] = "results/tables/toy.parquet"


rule toy_cell:
    input:
        script=cli_path("toy_cell"),
    output:
        metrics=cell_output("toy", "metrics.json"),
        curves=cell_output("toy", "curves.csv"),
        emissions=cell_output("toy", "emissions.csv"),
        embedding=cell_output("toy", "embedding.npy"),
        model=cell_output("toy", "model.pt"),
    log:
        cell_log("toy"),
    conda:
        "../envs/torch.yaml"
    threads: cell_threads("toy")
    resources:
        **cell_resources("toy"),
    params:
        hp=cell_params_json("toy"),
        cell=cell_identity("toy"),
        emissions=emissions_params(),
    shell:
        "python -m harmonic.cli.toy_cell --params-json {params.hp:q} --cell-json {params.cell:q}"
        " --emissions-json {params.emissions:q} --out-dir $(dirname {output.metrics:q}) > {log:q} 2>&1"


rule toy_stitch:
    input:
        module=cli_path("toy_stitch"),
        # the front's and every partner's model and record: a retrained model reruns the stitches that read it
        models=lambda w: [
            f"{d}/{name}"
            for d in [
                cell_dir("toy", w),
                *(p for _, p in TOY_STITCH_PARTNERS[cell_dir("toy", w)]),
            ]
            for name in ("model.pt", "metrics.json")
        ],
    output:
        metrics=cell_output("toy", "stitch/metrics.json"),
        pairs=cell_output("toy", "stitch/pairs.csv"),
    log:
        "logs/toy/{setting}/{dataset}/{model}/{head}/seed{seed}.stitch.log",
    conda:
        "../envs/torch.yaml"
    threads: cell_threads("toy")
    resources:
        **cell_resources("toy"),
    params:
        partners=lambda w: " ".join(
            f"--partner {kind}={path}"
            for kind, path in TOY_STITCH_PARTNERS[cell_dir("toy", w)]
        ),
        cut=TOY_STITCH.get("cut"),
        # the row's identity: the front model's, study "stitch" (its own study kept as front_study)
        cell=lambda w: json.dumps(
            dict(
                {k: v for k, v in registered_cell("toy", w).items() if k != "params"},
                study="stitch",
                front_study=registered_cell("toy", w)["study"],
            ),
            sort_keys=True,
        ),
    shell:
        "python -m harmonic.cli.toy_stitch"
        " --front $(dirname {output.metrics:q})/.. {params.partners} --cut {params.cut}"
        " --cell-json {params.cell:q} --out-dir $(dirname {output.metrics:q}) > {log:q} 2>&1"
