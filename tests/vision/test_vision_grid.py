"""The vision grid as the configs define it: the default's cells, the paper preset's full grid, the faithful and
corrected values of each study, and bad config values rejected by name before any cell runs."""

import copy
from pathlib import Path

import pytest
import yaml

from harmonic.vision.config import resolve_training
from harmonic.vision.grid import vision_cells

ROOT = Path(__file__).resolve().parents[2]
WEIGHT_STUDIES = ("baek-fig5-mnist-weights", "mg-mnist-single-layer")


def section(path):
    return yaml.safe_load((ROOT / path).read_text())["vision"]


def both_settings(path):
    """The section with every entry run under both settings (the default runs some studies under one, for time):
    the faithful and corrected values it defines are checked either way."""
    sec = section(path)
    sec["settings"] = ["faithful", "corrected"]
    for entry in sec["grid"]:
        entry.pop("settings", None)
    return sec


def by_key(cells, study, setting):
    return {c["head"]["distance"]: c for c in cells if c["study"] == study and c["setting"] == setting}


def test_default_config_grid_is_small_and_valid():
    cells = vision_cells(section("config.yaml"))
    assert 0 < len(cells) <= 40
    for cell in cells:
        resolve_training(cell["hyperparameters"])
        assert cell["dataset"] in ("mnist5k",) or "synthetic" in cell["dataset"]
    assert {c["backbone"] for c in cells} >= {"mlp", "cnn", "linear"}
    assert {c["study"] for c in cells} == {"mg-vision-grid", *WEIGHT_STUDIES}
    assert {c["setting"] for c in cells} == {"faithful", "corrected"}


@pytest.mark.parametrize("path", ["config.yaml", "presets/paper.yaml"])
def test_weight_studies_use_totensor_inputs_in_both_settings(path):
    """Baek et al. trained on ToTensor inputs: blank pixels are 0, which the interpretability score relies on."""
    cells = [c for c in vision_cells(both_settings(path)) if c["study"] in WEIGHT_STUDIES]
    assert {c["setting"] for c in cells} == {"faithful", "corrected"}
    for cell in cells:
        hp = resolve_training(cell["hyperparameters"])
        assert hp["normalize"] is False and hp["save_weights"] is True, cell["head_label"]


def test_paper_preset_plans_the_full_grid():
    sec = section("presets/paper.yaml")
    cells = vision_cells(sec)
    grid = [c for c in cells if c["study"] == "mg-vision-grid" and c["setting"] == "corrected"]
    heads = {c["head_label"] for c in grid}
    seeds = sec["seeds"]
    assert {c["backbone"] for c in grid} == {"mlp", "cnn", "resnet50", "pvt_v2_b0"}
    assert {c["dataset"] for c in grid} == {"mnist", "fashion-mnist", "cifar10", "cifar100"}
    pairs = {(c["dataset"], c["backbone"]) for c in grid}
    assert len(grid) == len(pairs) * len(heads) * len(seeds)
    assert len(heads) == len(sec["heads"]) >= 16
    by_pair = {(c["dataset"], c["backbone"]): c["hyperparameters"] for c in grid}
    assert by_pair[("cifar100", "resnet50")]["milestones"] == [60, 100, 140]
    assert by_pair[("cifar10", "cnn")]["batch_size"] == 4096
    assert by_pair[("cifar100", "pvt_v2_b0")]["lr"] == 0.0005
    faithful = [c for c in cells if c["study"] == "mg-vision-grid" and c["setting"] == "faithful"]
    assert len(faithful) == len(grid)
    assert all(c["hyperparameters"]["select"] == "final" for c in faithful)
    # n = 1 for every vision head in the original grid (vision/run/regular_config.py), in both settings
    assert {c["head"].get("n") for c in grid + faithful} == {None, 1.0}


def test_single_layer_study_faithful_exponents_follow_mlp_visualization():
    """mlp_visualization.py: n = 28 (euclidean on d^2, i.e. 56 on d) except n = 1 for hamming and canberra; hamming
    temperatures 10 (soft) and 50 (gumbel); mahalanobis with learn_cov=False. Corrected: n = 28 on d for all."""
    cells = vision_cells(section("presets/paper.yaml"))
    faithful = by_key(cells, "mg-mnist-single-layer", "faithful")
    corrected = by_key(cells, "mg-mnist-single-layer", "corrected")
    expected_n = {"euclidean": 56.0, "hamming_soft": 1.0, "hamming_gumbel": 1.0, "hamming_hard": 1.0, "canberra": 1.0}
    for distance, cell in faithful.items():
        if distance != "baseline":
            assert cell["head"]["n"] == expected_n.get(distance, 28.0), distance
            assert corrected[distance]["head"]["n"] == 28.0, distance
    assert faithful["hamming_soft"]["head"]["T"] == 10.0 and faithful["hamming_gumbel"]["head"]["T"] == 50.0
    assert faithful["minkowski"]["head"]["p"] == 1.5
    assert faithful["mahalanobis"]["hyperparameters"]["train_metric"] is False
    assert corrected["mahalanobis"]["hyperparameters"].get("train_metric", True) is True
    for cell in faithful.values():
        hp = resolve_training(cell["hyperparameters"])
        assert (hp["init_std"], hp["optimizer"], hp["lr"], hp["batch_size"], hp["epochs"]) == (
            1 / 32,
            "adamw",
            1e-3,
            64,
            10,
        )
        assert hp["select"] == "final" and hp["early_stop_on"] == "train_loss"


def test_baek_study_exponent_per_setting():
    """notebooks/mnist.ipynb: DistLayer(n=28) on d^2 = 56 on d; the paper: n = sqrt(D) = 28 on d."""
    for path in ("config.yaml", "presets/paper.yaml"):
        cells = vision_cells(both_settings(path))
        faithful = by_key(cells, "baek-fig5-mnist-weights", "faithful")
        corrected = by_key(cells, "baek-fig5-mnist-weights", "corrected")
        assert faithful["euclidean"]["head"]["n"] == 56.0 and corrected["euclidean"]["head"]["n"] == 28.0
        assert faithful["baseline"]["head"] == corrected["baseline"]["head"] == {"distance": "baseline", "bias": True}
        assert faithful["euclidean"]["hyperparameters"]["init_std"] == pytest.approx(1 / 28)


def test_overrides_match_and_skip_the_baseline_head():
    sec = section("config.yaml")
    sec["overrides"] = [{"where": {"setting": "corrected", "backbone": "mlp"}, "set": {"lr": 0.5, "head": {"n": 3}}}]
    cells = [c for c in vision_cells(sec) if c["backbone"] == "mlp" and c["dataset"] == "mnist5k"]
    for cell in cells:
        changed = cell["setting"] == "corrected"
        assert (cell["hyperparameters"]["lr"] == 0.5) == changed
        if cell["head"]["distance"] != "baseline":
            assert (cell["head"]["n"] == 3.0) == changed
    sec["overrides"] = [{"where": {"model": "mlp"}, "set": {"lr": 0.5}}]
    with pytest.raises(ValueError, match="unknown key.*model"):
        vision_cells(sec)


def test_bad_values_are_named():
    base = section("config.yaml")
    bad = copy.deepcopy(base)
    bad["grid"][0]["learning_rate"] = 0.1
    with pytest.raises(ValueError, match="learning_rate"):
        for cell in vision_cells(bad):
            resolve_training(cell["hyperparameters"])
    bad = copy.deepcopy(base)
    bad["grid"][0]["dataset"] = "imagenet"
    with pytest.raises(ValueError, match="imagenet"):
        vision_cells(bad)
    bad = copy.deepcopy(base)
    bad["heads"] = [{"distance": "cosine"}, {"distance": "cosine"}]
    with pytest.raises(ValueError, match="duplicate head labels"):
        vision_cells(bad)
    bad = copy.deepcopy(base)
    del bad["grid"][-2]["label"]  # two studies on mnist5k/linear with a common head: one output directory
    with pytest.raises(ValueError, match="label"):
        vision_cells(bad)
    bad = copy.deepcopy(base)
    bad["grid"][0]["settings"] = ["faithfull"]
    with pytest.raises(ValueError, match="faithfull"):
        vision_cells(bad)
    with pytest.raises(ValueError, match="normalize"):
        resolve_training({"save_weights": True, "normalize": True})


def test_a_grid_entry_may_have_its_own_seeds():
    config = section("config.yaml")
    config["seeds"] = [0]
    config["grid"] = [dict(config["grid"][0], seeds=[3, 4])]
    assert sorted({c["seed"] for c in vision_cells(config)}) == [3, 4]


def test_section_defaults_live_in_the_library_not_the_schema():
    """One place per default: harmonic/vision/config.py fills what the section leaves out; the schema repeats none."""
    from harmonic.vision.config import SECTION_DEFAULTS
    from harmonic.vision.grid import workflow_cells

    schema = yaml.safe_load((ROOT / "schemas/vision.schema.yaml").read_text())
    assert not [key for key, spec in schema["properties"].items() if "default" in spec]
    bare = {k: v for k, v in section("config.yaml").items() if k not in SECTION_DEFAULTS}
    params = workflow_cells(bare, "cpu")[0]["params"]
    assert params["threads"] == SECTION_DEFAULTS["threads"] and params["setting"] == SECTION_DEFAULTS["settings"][0]
    for key in ("val_fraction", "val_split_seed", "pca_samples", "weight_taus"):
        assert params[key] == SECTION_DEFAULTS[key], key
