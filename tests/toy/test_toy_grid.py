"""How the toy section of the config becomes cells: counts, paths and the order in which values override."""

from pathlib import Path

import pytest
import yaml

from harmonic.toy.config import SECTION_DEFAULTS
from harmonic.toy.grid import toy_cells

SECTION = dict(
    split="original",
    n_samples=1000,
    train_fraction=0.8,
    embed_dim=16,
    threads=1,
    tasks=["lattice", "permutation"],
    models=["mlp", "transformer"],
    heads=[{"distance": "baseline"}, {"distance": "euclidean", "n": 2.0}],
    seeds=[0, 1],
    train=dict(epochs=100, lr=0.002, batch_size=32, weight_decay=0.01, embedding_penalty=0.01),
    overrides=[
        {"where": {"model": "transformer"}, "set": {"weight_decay": 0.005}},
        {"where": {"task": "permutation", "model": "transformer"}, "set": {"epochs": 300}},
        {"where": {"head": "euclidean-n2"}, "set": {"lr": 0.001}},
    ],
    data_efficiency=dict(tasks=["lattice"], models=["mlp"], fractions=[0.1, 0.5], seeds=[0]),
    circle=dict(
        seeds=[50],
        train={"epochs": 20, "lr": 0.003},
        runs=[
            {"label": "mlp-wd0.5", "model": "mlp", "head": {"distance": "euclidean"}, "train": {"weight_decay": 0.5}}
        ],
    ),
)


def by_path(cells):
    return {(c["dataset"], c["model"], c["head"], c["seed"]): c["params"] for c in cells}


def test_counts_and_paths():
    cells = by_path(toy_cells(SECTION))
    assert len(cells) == 2 * 2 * 2 * 2 + 2 * 2 + 1
    assert ("lattice-frac0.1", "mlp", "euclidean-n2", 0) in cells
    assert cells[("lattice-frac0.1", "mlp", "baseline", 0)]["train_fraction"] == 0.1
    assert ("circle", "mlp-wd0.5", "euclidean", 50) in cells


def test_overrides_apply_in_order_and_circle_runs_keep_their_own_values():
    cells = by_path(toy_cells(SECTION))
    assert cells[("permutation", "transformer", "baseline", 0)]["epochs"] == 300
    assert cells[("lattice", "transformer", "baseline", 0)]["epochs"] == 100
    assert cells[("lattice", "transformer", "baseline", 0)]["weight_decay"] == 0.005
    assert cells[("lattice", "mlp", "baseline", 0)]["weight_decay"] == 0.01
    assert cells[("lattice", "mlp", "euclidean-n2", 1)]["lr"] == 0.001
    assert cells[("lattice", "mlp", "baseline", 1)]["lr"] == 0.002
    circle = cells[("circle", "mlp-wd0.5", "euclidean", 50)]
    assert (circle["epochs"], circle["lr"], circle["weight_decay"], circle["task"]) == (
        20,
        0.003,
        0.5,
        "modular_addition",
    )


def test_bad_circle_head_names_its_key():
    section = dict(
        SECTION, circle=dict(seeds=[50], runs=[{"label": "x", "model": "mlp", "head": {"distance": "cosin"}}])
    )
    with pytest.raises(ValueError, match=r"toy.circle.runs\[0\].head.*cosine"):
        toy_cells(section)


def test_section_defaults_live_in_the_library_not_the_schema():
    """One place per default: harmonic/toy/config.py fills what the section leaves out; the schema repeats none."""
    schema = yaml.safe_load((Path(__file__).resolve().parents[2] / "schemas/toy.schema.yaml").read_text())
    assert not [key for key, spec in schema["properties"].items() if "default" in spec]
    bare = {k: v for k, v in SECTION.items() if k not in SECTION_DEFAULTS}
    params = by_path(toy_cells(bare))[("lattice", "mlp", "baseline", 0)]
    assert {k: params[k] for k in ("split", "n_samples", "train_fraction", "embed_dim", "threads")} == {
        k: SECTION_DEFAULTS[k] for k in ("split", "n_samples", "train_fraction", "embed_dim", "threads")
    }
    assert params["setting"] == SECTION_DEFAULTS["settings"][0]
