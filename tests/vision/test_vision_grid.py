"""The vision grid as the configs define it: the default's cells, the paper preset's full grid, and bad config
values rejected by name before any cell runs."""

import copy
from pathlib import Path

import pytest
import yaml

from harmonic.vision.grid import vision_cells
from harmonic.vision.train import resolve_hyperparameters

ROOT = Path(__file__).resolve().parents[2]


def section(path):
    return yaml.safe_load((ROOT / path).read_text())["vision"]


def test_default_config_grid_is_small_and_valid():
    cells = vision_cells(section("config.yaml"))
    assert 0 < len(cells) <= 24
    for cell in cells:
        resolve_hyperparameters(cell["hyperparameters"])
        assert cell["dataset"] in ("mnist5k",) or "synthetic" in cell["dataset"]
    assert {c["backbone"] for c in cells} >= {"mlp", "cnn", "linear"}


def test_paper_preset_plans_the_full_grid():
    path = ROOT / "presets" / "paper.yaml"
    sec = section("presets/paper.yaml")
    cells = vision_cells(sec)
    grid = [c for c in cells if c["backbone"] != "linear"]
    heads = {c["head_label"] for c in grid}
    seeds = sec["seeds"]
    assert {c["backbone"] for c in grid} == {"mlp", "cnn", "resnet50", "pvt_v2_b0"}, path
    assert {c["dataset"] for c in grid} == {"mnist", "cifar10", "cifar100"}
    assert len(grid) == 4 * 3 * len(heads) * len(seeds)
    assert len(heads) == len(sec["heads"]) >= 16
    study = [c for c in cells if c["backbone"] == "linear"]
    assert {c["head_label"] for c in study} >= {"baseline", "euclidean", "cosine", "mahalanobis", "hamming_hard"}
    assert all(c["hyperparameters"]["save_weights"] for c in study)
    by_pair = {(c["dataset"], c["backbone"]): c["hyperparameters"] for c in grid}
    assert by_pair[("cifar100", "resnet50")]["milestones"] == [60, 100, 140]
    assert by_pair[("cifar10", "cnn")]["batch_size"] == 4096
    assert by_pair[("cifar100", "pvt_v2_b0")]["lr"] == 0.0005


def test_bad_values_are_named():
    base = section("config.yaml")
    bad = copy.deepcopy(base)
    bad["grid"][0]["learning_rate"] = 0.1
    with pytest.raises(ValueError, match="learning_rate"):
        for cell in vision_cells(bad):
            resolve_hyperparameters(cell["hyperparameters"])
    bad = copy.deepcopy(base)
    bad["grid"][0]["dataset"] = "imagenet"
    with pytest.raises(ValueError, match="imagenet"):
        vision_cells(bad)
    bad = copy.deepcopy(base)
    bad["heads"] = [{"distance": "cosine"}, {"distance": "cosine"}]
    with pytest.raises(ValueError, match="duplicate head labels"):
        vision_cells(bad)
