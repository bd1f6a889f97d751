# Helpers every experiment family uses: config validation, the cell registry, cell paths and per-cell params.
#
# Contract for a family rules file (rules/toy.smk is the worked example; vision.smk and llm.smk follow it). The
# Snakefile includes every family's file; the family itself decides, through register_family, whether it runs:
#   1. CELLS = register_family("<family>", make_cells, notebooks=(...)) first. It checks config[<family>] against
#      schemas/<family>.schema.yaml and its `heads` against the library's distance registry (also for a family that
#      config `families` does not list: a typo must not wait until it is switched on), then, for a listed family,
#      builds the cells with the library's make_cells(section, device) and records them. A cell is a dict with the
#      path parts setting (faithful | corrected, harmonic.settings), dataset, model, head (label) and seed, plus
#      "params": that cell's resolved hyperparameters (JSON-serialisable, including "setting"). Outputs then live in
#      results/<family>/<setting>/<dataset>/<model>/<head>/seed<k>/ (cell_output gives the wildcard pattern).
#      Every problem raises before any job runs, naming the key and the allowed values.
#      The notebooks (notebooks/<name>.ipynb) are the family's figures, rendered by rules/analysis.smk from
#      results/tables/<family>.parquet; a notebook takes papermill parameters `table` and `figures_dir` and saves
#      its figures (*.png) into figures_dir.
#   2. the family's cell rule writes cell_output("<family>", "metrics.json") and friends, asks for
#      `threads: cell_threads("<family>")` and `resources: **cell_resources("<family>")` (rules/resources.smk), and
#      takes `params: hp=cell_params_json("<family>")`: exactly ONE cell's hyperparameters as a JSON string, so a
#      config edit reruns only the cells it reaches (never pass the whole config as params).
#   3. FAMILY_RECORDS["<family>"]: more files in metrics.json format, written by jobs downstream of the cells (the
#      toy stitching jobs), that rule aggregate collects into the family's table as rows.

import difflib
import json
import os

import jsonschema
import yaml

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

import harmonic
import harmonic.cli
from harmonic.checks import cell_problems
from harmonic.settings import SETTINGS

# family -> list of cells (dicts), in config order; only the families config `families` lists
FAMILY_CELLS = {}
FAMILY_NOTEBOOKS = {}  # notebook name -> table it reads
# family -> more metrics.json-format rows its table collects (e.g. the toy stitching rows)
FAMILY_RECORDS = {}
FAMILY_SECTIONS = (
    {}
)  # family -> its config section with the library's defaults filled in (register_family)
_CELL_INDEX = {}  # family -> {(dataset, model, head, seed): cell}

CELL_KEYS = ("setting", "dataset", "model", "head", "seed")
# The command-line programs the rules call: `python -m harmonic.cli.<name>` (the installed package, which
# `make setup` installs editable from this checkout). Each rule takes its program's file as an input (cli_path), so
# editing it reruns only the jobs using it.
CLI = os.path.dirname(harmonic.cli.__file__)


def cli_path(name):
    """The file of program harmonic.cli.<name>, given as an input so that editing it reruns the jobs using it."""
    return os.path.join(CLI, f"{name}.py")


def validate_section(data, schema_name, prefix):
    """Validate (and fill defaults) with snakemake.utils.validate; on failure, name the key and the allowed values.

    snakemake's own message shows the schema path; users need the config key, e.g. "config toy.train.lr: ...".
    """
    schema_file = os.path.join(workflow.basedir, "schemas", schema_name)
    try:
        validate(data, schema_file)
    except WorkflowError:
        with open(schema_file) as handle:
            schema = yaml.safe_load(handle)
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
        unknown = [e for e in errors if unknown_keys(e, schema)]
        # A bad value inside allOf also marks its key "unevaluated": name the value's error then, not the key.
        error = jsonschema.exceptions.best_match(
            unknown or [e for e in errors if not is_key_check(e)] or errors
        )
        if error is None:
            raise
        parts = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}"
            for part in error.absolute_path
        )
        key = f"{prefix}{parts}".lstrip(".")
        if unknown:
            raise WorkflowError(unknown_keys_message(key, error, schema)) from None
        raise WorkflowError(
            f"config {key}: {error.message}{allowed_values(error.schema)}"
        ) from None


def is_key_check(error):
    return (
        error.validator in ("additionalProperties", "unevaluatedProperties")
        and error.validator_value is False
    )


def unknown_keys(error, root):
    """The keys an additional/unevaluated-properties error is about that the schema node does not know at all."""
    if not is_key_check(error):
        return []
    known = known_keys(error.schema, root)
    return [k for k in error.instance if k not in known]


def unknown_keys_message(key, error, root):
    """'config vision: unknown key 'seed' (did you mean 'seeds'?); allowed keys: ...' for a misspelt key."""
    known = known_keys(error.schema, root)
    unknown = unknown_keys(error, root)
    hints = [
        f" (did you mean {close[0]!r}?)" if close else ""
        for close in (difflib.get_close_matches(k, known, n=1) for k in unknown)
    ]
    where = f"config {key}" if key else "config (top level)"
    names = ", ".join(f"{k!r}{hint}" for k, hint in zip(unknown, hints))
    return f"{where}: unknown key {names}; allowed keys: {', '.join(known)}"


def known_keys(schema, root):
    """Property names a schema node allows, following allOf and local $refs (#/definitions/...)."""
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    keys = list(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        keys += [k for k in known_keys(part, root) if k not in keys]
    return keys


def allowed_values(schema):
    """A short ' (allowed: ...)' from the failing schema node: its enum, type and bounds."""
    if not isinstance(schema, dict):
        return ""
    if "enum" in schema:
        return f" (allowed: {', '.join(map(str, schema['enum']))})"
    parts = [schema["type"]] if "type" in schema else []
    for key, sign in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ):
        if key in schema:
            parts.append(f"{sign} {schema[key]}")
    if "properties" in schema and schema.get("additionalProperties") is False:
        parts.append(f"keys {', '.join(schema['properties'])}")
    return f" (allowed: {', '.join(parts)})" if parts else ""


def validate_top_level():
    """Check the keys every family shares (schemas/config.schema.yaml); fills schema defaults."""
    validate_section(config, "config.schema.yaml", "")


def validate_family(family):
    """Check config[family] against schemas/<family>.schema.yaml and its heads against the distance registry."""
    if family not in config:
        raise WorkflowError(
            f"config: family {family!r} is listed in `families` but has no `{family}:` section"
        )
    validate_section(config[family], f"{family}.schema.yaml", family)
    labels = {}
    for i, spec in enumerate(config[family].get("heads", [])):
        label = checked_head_label(spec, f"{family}.heads[{i}]")
        if label in labels:
            raise WorkflowError(
                f"config {family}.heads[{i}]: same label {label!r} as {family}.heads[{labels[label]}]"
                " (each head must differ, or cells would share an output directory)"
            )
        labels[label] = i


def checked_head_label(spec, key):
    """The library's label of a head spec; a bad spec stops the run with a message naming `key`."""
    try:
        return harmonic.head_label(spec)
    except ValueError as exc:
        raise WorkflowError(f"config {key}: {exc}") from None


def register_family(family, make_cells, notebooks=(), resolve_section=None):
    """A family rules file's one registration call (contract at the top of this file); returns the family's cells,
    [] when config `families` does not list it. resolve_section, where the family has one, fills the section's
    library defaults first (FAMILY_SECTIONS keeps the result)."""
    if family in config or family in config["families"]:
        validate_family(family)
    if family not in config["families"]:
        return []
    try:
        section = resolve_section(config[family]) if resolve_section else config[family]
        FAMILY_SECTIONS[family] = section
        cells = make_cells(section, config["device"])
    except ValueError as exc:
        # The message names the key; some library messages start with "config " already.
        message = str(exc)
        raise WorkflowError(
            message if message.startswith("config ") else f"config {message}"
        ) from None
    register_cells(family, cells)
    FAMILY_NOTEBOOKS.update(
        {name: f"results/tables/{family}.parquet" for name in notebooks}
    )
    return cells


def cell_threads(family):
    """CPU threads of a family's cell jobs: config `<family>.threads`, or the library's default
    (harmonic/<family>/config.py) from the resolved section. Snakemake gives them to the job as OMP_NUM_THREADS
    (capped at --cores), which torch follows; the toy and vision grids copy the same value into every cell's
    params["threads"], which the cell passes to torch.set_num_threads.
    """
    # a family that config `families` does not list has no section here and no jobs: the value is never used
    return FAMILY_SECTIONS.get(family, {}).get("threads", 1)


def register_cells(family, cells):
    """Record a family's cells; two cells with one output directory is a config error, not a silent overwrite, and
    values that cannot run together (harmonic.checks) stop the run before any job."""
    problems = cell_problems(family, cells)
    if problems:
        raise WorkflowError("config " + "\nconfig ".join(problems))
    index = {}
    for cell in cells:
        if cell.get("setting") not in SETTINGS:
            raise WorkflowError(
                f"config {family}: cell {cell.get('dataset')}/{cell.get('model')}/{cell.get('head')} has setting"
                f" {cell.get('setting')!r}; allowed: {', '.join(SETTINGS)}"
            )
        key = tuple(str(cell[k]) for k in CELL_KEYS)
        if key in index:
            raise WorkflowError(
                f"config {family}: two cells share the output directory {cell_dir(family, cell)}"
            )
        index[key] = cell
    FAMILY_CELLS[family] = cells
    _CELL_INDEX[family] = index


def cell_dir(family, cell):
    return f"results/{family}/{cell['setting']}/{cell['dataset']}/{cell['model']}/{cell['head']}/seed{cell['seed']}"


def cell_output(family, filename):
    """Wildcard pattern of one cell output, e.g. results/toy/{setting}/{dataset}/{model}/{head}/seed{seed}/metrics.json."""
    return f"results/{family}/{{setting}}/{{dataset}}/{{model}}/{{head}}/seed{{seed}}/{filename}"


def cell_log(family):
    return f"logs/{family}/{{setting}}/{{dataset}}/{{model}}/{{head}}/seed{{seed}}.log"


def family_outputs(family, filename="metrics.json"):
    """One path per registered cell of `family`."""
    return [
        f"{cell_dir(family, cell)}/{filename}" for cell in FAMILY_CELLS.get(family, [])
    ]


def registered_cell(family, wildcards):
    """The registered cell a job's wildcards name."""
    key = tuple(str(wildcards[k]) for k in CELL_KEYS)
    try:
        return _CELL_INDEX[family][key]
    except KeyError:
        raise WorkflowError(
            f"{family}: no cell {dict(zip(CELL_KEYS, key))} in the config"
        ) from None


def cell_params_json(family):
    """Input function: the one cell's resolved hyperparameters as a canonical JSON string."""
    return lambda wildcards: json.dumps(
        registered_cell(family, wildcards)["params"], sort_keys=True
    )


def cell_identity(family):
    """Input function: the cell's identity (path parts plus study extras) as JSON, recorded in metrics.json."""

    def identity(wildcards):
        cell = registered_cell(family, wildcards)
        return json.dumps(
            {k: v for k, v in cell.items() if k != "params"}, sort_keys=True
        )

    return identity


def emissions_params():
    """Emission settings as JSON (top level of the config, the same for every cell)."""
    return json.dumps(config.get("emissions", {}), sort_keys=True)


def evidence_path(item):
    """A committed evidence table of config `claims.evidence`: relative paths are in the checkout (benchmarks/results/),
    not in the working directory, so `--directory` runs find them too."""
    return os.path.join(workflow.basedir, item["table"])


def notebook_source(wildcards):
    """The notebook file itself is an input, so editing one notebook re-renders only it."""
    return workflow.source_path(f"../notebooks/{wildcards.notebook}.ipynb")


def notebook_table(wildcards):
    return FAMILY_NOTEBOOKS[wildcards.notebook]
