"""The LLM cells of a config: (corpus, model, head, seed) -> that cell's fully resolved hyperparameters.

Used by rules/llm.smk (so each job's params are exactly its own values) and by the tests. A model entry of
`llm.models` is {kind, model_args, train, schedules}: `kind` (gpt | bert | qwen2) defaults to the entry's name; its
`train` values override the section's `train`; the learning-rate schedule comes from `schedules`, looked up by the
head's distance name, then "baseline" or "harmonic" (model-level schedules first, then the section's).
"""

from harmonic.heads import BASELINE, head_label
from harmonic.llm.train import resolve_config
from harmonic.settings import check_settings

SCHEDULE_KEYS = ("lr", "min_lr", "warmup_steps")


def schedule_for(llm: dict, entry: dict, spec: dict) -> dict:
    group = BASELINE if spec["distance"] == BASELINE else "harmonic"
    for schedules in (entry.get("schedules", {}), llm.get("schedules", {})):
        for key in (spec["distance"], group):
            if key in schedules:
                return dict(schedules[key])
    return {}


def cell_params(llm: dict, model: str, spec: dict, seed: int, device: str = "auto") -> dict:
    entry = llm["models"][model]
    raw = {**llm.get("train", {}), **entry.get("train", {}), **schedule_for(llm, entry, spec)}
    raw.update(
        model=entry.get("kind", model),
        model_args=entry.get("model_args", {}),
        head=spec,
        seed=seed,
        data_dir=f"data/{llm['corpus']}",
        vocab_limit=llm.get("vocab_limit"),
        device=device,
        tensorboard=llm.get("tensorboard", True),
        wandb=llm.get("wandb", {}),
        analysis=llm.get("analysis", {}),
    )
    try:
        params = resolve_config(raw)
    except ValueError as err:
        raise ValueError(f"llm.models.{model} with head {head_label(spec)}: {err}") from None
    params.pop("emissions")  # the workflow passes the top-level emissions settings separately
    return params


def llm_cells(llm: dict, device: str = "auto") -> list[dict]:
    cells = []
    settings = check_settings(llm.get("settings", ["corrected"]), "llm.settings")
    for setting, (model, entry) in ((s, m) for s in settings for m in llm["models"].items()):
        for spec in entry.get("heads", llm["heads"]):
            for seed in llm["seeds"]:
                params = cell_params(llm, model, spec, seed, device)
                params["setting"] = setting
                cells.append(
                    dict(
                        setting=setting,
                        dataset=llm["corpus"],
                        model=model,
                        head=head_label(spec),
                        seed=seed,
                        params=params,
                    )
                )
    return cells


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
