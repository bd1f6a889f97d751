# Downstream of the cells: one tidy table per family, the claims table (results/claims.{csv,html}: every claim of
# harmonic/claims.yaml evaluated over this run's tables and the committed evidence of config `claims.evidence`),
# the figure notebooks (papermill), results/index.html (opens with the claims).
# Notebooks are inputs of their rule (workflow.source_path), so editing one re-renders only it. The HTML uses
# nbconvert's `basic` template with code cells folded (notebooks/templates/folded.html.j2): figures and findings
# first, code one click away, no script or style from a CDN (the lab template loads mermaid.js).


wildcard_constraints:
    family="|".join(FAMILY_CELLS) or "NO_FAMILY",
    notebook="|".join(FAMILY_NOTEBOOKS) or "NO_NOTEBOOK",


rule aggregate:
    input:
        script=cli_path("aggregate"),
        metrics=lambda wildcards: family_outputs(wildcards.family, "metrics.json"),
    output:
        parquet="results/tables/{family}.parquet",
        csv="results/tables/{family}.csv",
    log:
        "logs/aggregate/{family}.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "python -m harmonic.cli.aggregate --parquet {output.parquet:q} --csv {output.csv:q} {input.metrics:q} > {log:q} 2>&1"


rule notebook:
    input:
        notebook=notebook_source,
        table=notebook_table,
        template=workflow.source_path("../notebooks/templates/folded.html.j2"),
    output:
        ipynb="results/notebooks/{notebook}.ipynb",
        html="results/notebooks/{notebook}.html",
        figures=report(
            directory("results/figures/{notebook}"),
            patterns=["{figure}.png"],
            category="{notebook}",
            caption="../docs/report_caption.rst",
        ),
    log:
        "logs/notebooks/{notebook}.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "(mkdir -p {output.figures:q}"
        " && papermill --kernel python3 --log-output {input.notebook:q} {output.ipynb:q}"
        " -p table {input.table:q} -p figures_dir {output.figures:q}"
        " && jupyter nbconvert --to html --template basic --template-file {input.template:q}"
        " --output-dir $(dirname {output.html:q}) {output.ipynb:q}) > {log:q} 2>&1"


rule claims:
    input:
        script=cli_path("claims"),
        claims_file=workflow.source_path("../harmonic/claims.yaml"),
        tables=expand("results/tables/{family}.parquet", family=FAMILY_CELLS),
        evidence=[evidence_path(item) for item in config["claims"]["evidence"]],
    output:
        csv="results/claims.csv",
        html="results/claims.html",
    log:
        "logs/claims.log",
    conda:
        "../envs/analysis.yaml"
    params:
        scale=config["claims"]["scale"],
        evidence=[
            f"{item['scale']}={evidence_path(item)}"
            for item in config["claims"]["evidence"]
        ],
    shell:
        "python -m harmonic.cli.claims --scale {params.scale:q} --tables {input.tables:q}"
        " --evidence {params.evidence:q} --csv {output.csv:q} --html {output.html:q} > {log:q} 2>&1"


rule index:
    input:
        script=cli_path("make_index"),
        claims_csv="results/claims.csv",
        claims_html="results/claims.html",
        html=expand("results/notebooks/{notebook}.html", notebook=FAMILY_NOTEBOOKS),
        figures=expand("results/figures/{notebook}", notebook=FAMILY_NOTEBOOKS),
        tables=expand("results/tables/{family}.csv", family=FAMILY_CELLS),
    output:
        "results/index.html",
    log:
        "logs/index.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "python -m harmonic.cli.make_index --out {output:q} --claims-csv {input.claims_csv:q}"
        " --claims-html {input.claims_html:q} --html {input.html:q}"
        " --figures {input.figures:q} --tables {input.tables:q} > {log:q} 2>&1"
