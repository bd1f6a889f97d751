"""Cross-field checks of a family's cells: combinations that each pass the schema but cannot run together.

The schemas check one value at a time; these check values against each other (a model width against its number
of attention heads, a schedule against its milestones, a regularizer name whatever its weight), over the cells'
resolved params, so the workflow stops before any job with a message naming the config key. rules/common.smk calls
`cell_problems` when a family registers its cells.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from harmonic.distances import distance_names


def check_yaml_file(path) -> None:
    """Parse a YAML file, raising ValueError with its path, line and column on a syntax error (Snakemake's own
    message names neither)."""
    import yaml

    try:
        with open(path) as handle:
            yaml.safe_load(handle)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ValueError(
            f"{path}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML ({exc.problem or exc.context})"
        ) from None


def _default(cls: type, name: str):
    """A constructor's default: the value a model uses when the config leaves it out (one place per default)."""
    return inspect.signature(cls).parameters[name].default


def toy_problems(cell: dict) -> list[str]:
    from harmonic.toy.models import OriginalToyTransformer, ToyTransformer

    params = cell["params"]
    cls = OriginalToyTransformer if params.get("transformer") == "original" else ToyTransformer
    heads = _default(cls, "n_heads")
    if params["model"] == "transformer" and params["embed_dim"] % heads:
        return [
            f"toy.embed_dim: {params['embed_dim']} is not divisible by the toy transformer's {heads} attention heads"
        ]
    return []


def llm_problems(cell: dict) -> list[str]:
    from harmonic.llm.models import GPT, BertMLM, Qwen2LM

    params = cell["params"]
    cls = {"gpt": GPT, "bert": BertMLM, "qwen2": Qwen2LM}[params["model"]]
    args = params["model_args"]
    n_embd, n_head = (args.get(k, _default(cls, k)) for k in ("n_embd", "n_head"))
    key = f"llm.models.{cell.get('architecture', cell['model'])}.model_args"
    problems = []
    if n_embd % n_head:
        problems.append(f"{key}: n_embd {n_embd} is not divisible by n_head {n_head}")
    if cls is Qwen2LM:
        n_kv_head = args.get("n_kv_head", _default(cls, "n_kv_head"))
        if n_head % n_kv_head:
            problems.append(f"{key}: n_head {n_head} is not divisible by n_kv_head {n_kv_head}")
    return problems


def vision_problems(cell: dict) -> list[str]:
    params = cell["params"]
    where = f"vision.grid ({cell['dataset']}, {cell['model']}) or vision.defaults"
    problems = []
    regularizer = params.get("regularizer")
    if regularizer is not None and regularizer not in distance_names():
        problems.append(
            f"{where}: regularizer {regularizer!r} is not a distance (checked whatever regularizer_lambda is);"
            f" allowed: null, {', '.join(distance_names())}"
        )
    if params.get("schedule") == "multistep" and not params.get("milestones"):
        problems.append(f"{where}: schedule multistep needs milestones (epochs at which the lr drops by gamma)")
    milestones = params.get("milestones") or []
    if list(milestones) != sorted(set(milestones)):
        problems.append(f"{where}: milestones {milestones} must be strictly increasing")
    return problems


CHECKS: dict[str, Callable[[dict], list[str]]] = {
    "toy": toy_problems,
    "vision": vision_problems,
    "llm": llm_problems,
}


def cell_problems(family: str, cells: list[dict]) -> list[str]:
    """Every distinct problem among a family's cells, in config order (empty when they can all run)."""
    check = CHECKS.get(family, lambda cell: [])
    problems: list[str] = []
    for cell in cells:
        problems += [p for p in check(cell) if p not in problems]
    return problems
