# harmonic-repro: reproduce the harmonic-loss papers. See README.md and docs/architecture.md.
#   snakemake -c 2                                   the embedded default (config.yaml)
#   snakemake -c 2 --configfile presets/paper.yaml   the papers' full grids
import os
import sys

from snakemake.exceptions import WorkflowError

sys.path.insert(
    0, workflow.basedir
)  # `import harmonic` from the checkout, installed or not


from harmonic.checks import check_yaml_file

try:  # a syntax error in the embedded config names its line (a --configfile's: run with --verbose, see README)
    check_yaml_file(os.path.join(workflow.basedir, "config.yaml"))
except ValueError as err:
    raise WorkflowError(str(err)) from None


configfile: os.path.join(workflow.basedir, "config.yaml")  # found from any --directory


include: "rules/common.smk"
include: "rules/sources.smk"


validate_top_level()


wildcard_constraints:
    setting="|".join(SETTINGS),
    dataset="[^/]+",  # the cell path parts of rules/common.smk
    model="[^/]+",
    head="[^/]+",
    seed="[0-9]+",


include: "rules/resources.smk"
# Every family's rules; each registers itself (register_family, rules/common.smk): its section is always checked,
# its cells are planned only when config `families` lists it.
include: "rules/toy.smk"
include: "rules/vision.smk"
include: "rules/llm.smk"
include: "rules/analysis.smk"


rule all:
    default_target: True
    input:
        "results/index.html",
        expand("results/tables/{family}.parquet", family=FAMILY_CELLS),
