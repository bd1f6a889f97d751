"""The LLM cells of a config: (setting, study, model, head, seed) -> that cell's fully resolved hyperparameters.

Used by rules/llm.smk (so each job's params are exactly its own values) and by the tests. `llm.studies` names the
papers' experiments (e.g. baek-gpt2: Baek et al.'s GPT-2 pair; mg-llm: Miller-Golub et al.'s heads on GPT, BERT,
Qwen2), each with its models (entries of `llm.models`) and heads. A cell's values: the section's `train`, then its
model's `train`, then every entry of `llm.overrides` whose `where` matches the cell (keys setting, study, model,
head label, distance, seed) in order; an override's `head` and `model_args` values are merged into the head spec
(e.g. the exponent n) and the model's arguments (e.g. dropout).

Cells live at results/llm/<setting>/<corpus>/<study>-<model>/<head>/seed<k>/ (head = the label of the spec as the
study writes it, the same under both settings; hp.head holds the spec after the overrides).

Within a study, every head of a model trains with ONE optimiser (MATCHED_KEYS equal) unless the study lists the
setting in `per_head_optimizer` (Baek et al. ran the harmonic arm at 10x the learning rate: faithful only).
"""

from harmonic.heads import head_label
from harmonic.llm.config import resolve_config, resolve_section
from harmonic.settings import check_settings

# What "one optimiser" means: the optimiser, its schedule, the loss smoothing and the training budget.
MATCHED_KEYS = (
    "lr",
    "min_lr",
    "warmup_steps",
    "betas",
    "weight_decay",
    "decay_embeddings",
    "grad_clip",
    "label_smoothing",
    "max_steps",
    "tokens_per_step",
)


def overridden(llm: dict, match: dict, base: dict) -> dict:
    """`base` updated by the `set` of every override whose `where` keys all equal the cell's `match` values."""
    values = {**base, "head": dict(base["head"]), "model_args": dict(base["model_args"])}
    for override in llm["overrides"]:
        if all(match.get(key) == value for key, value in override["where"].items()):
            change = dict(override["set"])
            values["head"].update(change.pop("head", {}))
            values["model_args"].update(change.pop("model_args", {}))
            values.update(change)
    return values


def cell_hyperparameters(
    llm: dict, setting: str, study: str, model: str, spec: dict, seed: int, device: str = "auto"
) -> dict:
    """One cell's values (the section's train, the model's train, the matching overrides, the cell's identity),
    resolved and checked; an error names the study, setting, model and head."""
    entry = llm["models"][model]
    match = dict(
        setting=setting, study=study, model=model, head=head_label(spec), distance=spec["distance"], seed=seed
    )
    base = {**llm.get("train", {}), **entry.get("train", {}), "head": spec, "model_args": entry.get("model_args", {})}
    raw = overridden(llm, match, base)
    raw.update(
        setting=setting,
        study=study,
        model=entry.get("kind", model),
        seed=seed,
        data_dir=f"data/{llm['corpus']}",
        vocab_limit=llm["vocab_limit"],
        device=device,
        tensorboard=llm["tensorboard"],
        wandb=llm["wandb"],
        analysis=llm["analysis"],
    )
    try:
        params = resolve_config(raw)
        head_label(params["head"])  # a bad override of the head spec is named here
    except ValueError as err:
        raise ValueError(f"llm.studies.{study} ({setting}), model {model}, head {match['head']}: {err}") from None
    params.pop("emissions")  # the workflow passes the top-level emissions settings separately
    return params


def llm_cells(llm: dict, device: str = "auto") -> list[dict]:
    llm = resolve_section(llm)
    cells = []
    settings = check_settings(llm["settings"], "llm.settings")
    for setting in settings:
        for study, entry in llm["studies"].items():
            for model in entry["models"]:
                if model not in llm["models"]:
                    raise ValueError(f"llm.studies.{study}.models: {model!r} is not an entry of llm.models")
                for spec in entry["heads"]:
                    for seed in llm["seeds"]:
                        cells.append(
                            dict(
                                setting=setting,
                                dataset=llm["corpus"],
                                model=f"{study}-{model}",
                                head=head_label(spec),
                                seed=seed,
                                study=study,
                                architecture=model,
                                distance=spec["distance"],
                                params=cell_hyperparameters(llm, setting, study, model, spec, seed, device),
                            )
                        )
    check_one_optimizer(llm, cells)
    return cells


def check_one_optimizer(llm: dict, cells: list[dict]) -> None:
    """Every head of a (setting, study, model) trains with the same MATCHED_KEYS values, unless the study allows
    per-head optimisers in that setting; otherwise ValueError naming the study, the key and the values."""
    groups = {}
    for cell in cells:
        if cell["setting"] in llm["studies"][cell["study"]].get("per_head_optimizer", []):
            continue
        groups.setdefault((cell["setting"], cell["study"], cell["architecture"]), []).append(cell)
    for (setting, study, model), members in groups.items():
        for key in MATCHED_KEYS:
            values = {cell["head"]: cell["params"][key] for cell in members}
            if len({repr(v) for v in values.values()}) > 1:
                raise ValueError(
                    f"llm.studies.{study} ({setting}), model {model}: heads train with different {key} {values}; "
                    f"one optimiser per study, unless the study lists {setting!r} in per_head_optimizer"
                )


def probe_params(cells: list[dict], setting: str, dataset: str, model: str, head: str) -> dict:
    """The hyperparameters of the (setting, model, head)'s first cell: the memory probe does not depend on the seed."""
    for cell in cells:
        if (cell["setting"], cell["dataset"], cell["model"], cell["head"]) == (setting, dataset, model, head):
            return cell["params"]
    raise ValueError(f"llm: no cell for setting {setting!r}, dataset {dataset!r}, model {model!r}, head {head!r}")


def cell_inputs(setting: str, dataset: str, model: str, head: str, with_probe: bool) -> dict:
    """A cell's input files: its corpus's token files and meta.json (a changed .bin makes the cell stale) and, with
    micro_batch auto, its memory-probe result."""
    inputs = {split: f"data/{dataset}/{split}.bin" for split in ("train", "val")}
    inputs["meta"] = f"data/{dataset}/meta.json"
    if with_probe:
        inputs["probe"] = f"results/llm/probe/{setting}/{dataset}/{model}/{head}.json"
    return inputs
