"""The faithful and corrected toy settings: each difference from the original code has a test that would catch it.

The original's formulas are written out here from its source (grow-crystals src/utils/model.py), not imported.
"""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from harmonic.cli import toy_cell
from harmonic.metrics import pca_summary
from harmonic.regularizers import embedding_penalty
from harmonic.toy.config import resolve
from harmonic.toy.datasets import ev_rows
from harmonic.toy.grid import toy_cells
from harmonic.toy.models import (
    OriginalToyTransformer,
    build_model,
    effective_head,
    harmonic_exponent,
    penalised_embedding,
    resolve_toy_head,
    toy_head_label,
)
from harmonic.toy.train import embedding_metrics
from harmonic.toy.two_points import train_two_points

ROOT = Path(__file__).resolve().parents[2]

EUCLIDEAN = {"distance": "euclidean"}


def paper_section():
    section = yaml.safe_load((ROOT / "presets/paper.yaml").read_text())["toy"]
    section.setdefault("threads", 1)
    return section


def paper_cells():
    return {
        (c["setting"], c["study"], c["dataset"], c["model"], c["head"], c["seed"]): c
        for c in toy_cells(paper_section())
    }


# ---- exponent --------------------------------------------------------------------------------------------------


def test_faithful_exponent_is_2_on_d_and_matches_the_original_distlayer():
    assert harmonic_exponent(EUCLIDEAN, 2) == 2.0 and harmonic_exponent(EUCLIDEAN, 1) == 1.0
    assert harmonic_exponent({"distance": "euclidean", "n": 3.0}, 2) == 6.0
    assert harmonic_exponent({"distance": "baseline"}, 2) is None
    torch.manual_seed(0)
    model = build_model("mlp", 31, 2, effective_head(EUCLIDEAN, 2)).eval()
    tokens = torch.randint(0, 31, (16, 2))
    with torch.no_grad():
        ours = F.softmax(model(tokens), dim=-1)
        # the original: dist_sq = |w|^2 + |x|^2 - 2 w.x + 1e-4, divided by its row minimum, raised to -1, normalised
        x, w = model.body(model.embedding(tokens).flatten(1)), model.embedding.weight
        dist_sq = (w**2).sum(1)[None] + (x**2).sum(1)[:, None] - 2 * x @ w.T + 1e-4
        powered = (dist_sq / dist_sq.min(1, keepdim=True).values) ** -1.0
        original = powered / powered.sum(1, keepdim=True)
    torch.testing.assert_close(ours, original, rtol=2e-3, atol=1e-5)


def test_head_labels_do_not_change_with_the_setting_but_the_recorded_exponent_does():
    cells = paper_cells()
    faithful = cells[("faithful", "grid", "lattice", "mlp", "euclidean", 0)]["params"]
    corrected = cells[("corrected", "grid", "lattice", "mlp", "euclidean", 0)]["params"]
    assert faithful["head"] == corrected["head"]
    recorded = {}
    for name, params in (("faithful", faithful), ("corrected", corrected)):
        recorded[name] = resolve(json.loads(json.dumps(params)))["harmonic_exponent"]
    assert recorded == {"faithful": 2.0, "corrected": 1.0}


# ---- embedding penalty -----------------------------------------------------------------------------------------


def test_faithful_mlp_penalty_has_no_gradient_on_the_embedding():
    model = build_model("mlp", 31, 2, EUCLIDEAN)
    faithful = embedding_penalty(penalised_embedding(model, {"mlp_penalty_gradient": False}))
    assert not faithful.requires_grad and faithful.item() > 0  # added to the loss, but nothing to differentiate
    embedding_penalty(penalised_embedding(model, {"mlp_penalty_gradient": True})).backward()
    assert model.embedding.weight.grad.abs().sum() > 0


def test_transformer_penalty_keeps_its_gradient_in_both_settings():
    for transformer in ("original", "prenorm"):
        model = build_model("transformer", 31, 2, {"distance": "baseline"}, transformer=transformer)
        embedding_penalty(penalised_embedding(model, {"mlp_penalty_gradient": False})).backward()
        assert model.embedding.weight.grad.abs().sum() > 0


# ---- initialisation --------------------------------------------------------------------------------------------


def test_faithful_mlp_embedding_starts_as_the_original_tied_linear_weight():
    torch.manual_seed(0)
    uniform = build_model("mlp", 130, 2, EUCLIDEAN, embedding_init="linear_uniform").embedding.weight
    normal = build_model("mlp", 130, 2, EUCLIDEAN, embedding_init="normal").embedding.weight
    assert uniform.abs().max() <= 0.25 and uniform.abs().max() > 0.24  # U(+-1/sqrt(16)), nn.Linear(16, V)'s bound
    assert 0.9 < normal.std().item() < 1.1
    with pytest.raises(ValueError, match="embedding_init"):
        build_model("mlp", 31, 2, EUCLIDEAN, embedding_init="xavier")


# ---- the original transformer ----------------------------------------------------------------------------------


def test_faithful_transformer_is_post_ln_relu_dropout_with_an_extra_residual():
    torch.manual_seed(0)
    model = build_model("transformer", 31, 2, {"distance": "baseline"}, transformer="original")
    assert isinstance(model, OriginalToyTransformer)
    for layer in model.layers:
        assert layer.norm_first is False and layer.dropout.p == 0.1 and layer.activation is F.relu
    assert 0.7 < model.position.std().item() < 1.3  # N(0, 1) positions
    assert model.head.centres is model.embedding.weight and model.head.linear.bias is None  # tied CE, no bias
    tokens = torch.randint(0, 31, (8, 2))
    model.eval()
    with torch.no_grad():
        x = model.embedding(tokens) + model.position
        for layer in model.layers:
            x = layer(x) + x
        torch.testing.assert_close(model(tokens), x[:, -1] @ model.embedding.weight.T)
    harmonic = build_model("transformer", 31, 2, EUCLIDEAN, transformer="original")
    assert harmonic.head.centres is not harmonic.embedding.weight  # the harmonic head is untied
    model.train()
    assert not torch.equal(model(tokens), model(tokens))  # dropout is on in training


# ---- EV rows ---------------------------------------------------------------------------------------------------


def test_ev_rows_original_and_objects():
    assert list(ev_rows("family_tree", 130, "original", "pc1_pc2")) == list(range(1, 127))
    assert list(ev_rows("family_tree", 130, "original", "cum_10")) == list(range(1, 127))
    assert len(ev_rows("equivalence", 42, "original", "pc1_pc2")) == 40
    assert len(ev_rows("equivalence", 42, "original", "cum_10")) == 42  # crystal_metric keeps the two answers
    assert len(ev_rows("equivalence", 42, "objects", "cum_10")) == 40
    assert len(ev_rows("lattice", 25, "original", "cum_10")) == 25


def test_cell_ev_ignores_rows_that_are_not_objects():
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(130, 16)).astype(np.float32)
    embedding[[0, 127, 128, 129]] = 100 * np.eye(16, dtype=np.float32)[[0, 0, 1, 1]]  # far unused / relation rows
    objects = embedding_metrics(dict(task="family_tree", ev_rows="objects"), embedding)
    assert objects["ev_rows_pc1_pc2"] == objects["ev_rows_cum_10"] == 126 and objects["ev_pc1_pc2"] < 0.5
    assert pca_summary(embedding, standardize=False)["ev_pc1_pc2"] > 0.9  # what every row would say


# ---- two-point toy ---------------------------------------------------------------------------------------------


def test_two_point_centres_converge_and_ce_weights_keep_growing():
    hp = dict(seed=0, steps=2000, lr=0.01, distance_power=2)
    _, weight, harmonic = train_two_points(dict(hp, head=EUCLIDEAN), log=lambda line: None)
    _, _, ce = train_two_points(dict(hp, head={"distance": "baseline", "bias": False}), log=lambda line: None)
    assert harmonic["centre_distance_final"] < 0.05 and abs(harmonic["weight_norm_growth"]) < 0.05
    np.testing.assert_allclose(weight, [[1, 1], [-1, -1]], atol=0.05)
    assert ce["weight_norm_growth"] > 0.3 and ce["centre_distance_final"] > 1


def test_two_point_cell_writes_its_metrics(tmp_path):
    cells = paper_cells()
    params = cells[("faithful", "two_points", "two_points", "layer", "euclidean", 0)]["params"]
    params = dict(params, steps=200)
    toy_cell.main(
        ["--out-dir", str(tmp_path), "--params-json", json.dumps(params), "--emissions-json", '{"enabled": false}']
    )
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "ok" and record["hyperparameters"]["harmonic_exponent"] == 2.0
    assert {"centre_distance_final", "weight_norm_growth", "weight_norm_final"} <= set(record["metrics"])
    assert "epochs" not in record["hyperparameters"]  # only what the two-point layer uses


# ---- ablation heads --------------------------------------------------------------------------------------------


def test_ablation_heads_compute_what_their_names_say():
    torch.manual_seed(0)
    x = torch.randn(5, 16)
    model = build_model("mlp", 31, 2, {"distance": "euclidean_softmax"})
    w = model.embedding.weight
    torch.testing.assert_close(model.head(x), -torch.cdist(x, w))
    model = build_model("mlp", 31, 2, {"distance": "dot_harmax", "n": 2.0})
    w = model.embedding.weight
    torch.testing.assert_close(model.head(x), 2.0 * torch.log(F.softplus(x @ w.T)))
    far = (-100 * w[:1]).detach().requires_grad_(True)  # a dot product of about -1600 with class 0
    assert torch.isfinite(model.head(far)).all()
    model.head(far).sum().backward()
    assert torch.isfinite(far.grad).all()
    assert toy_head_label({"distance": "dot_harmax", "n": 2.0}) == "dot_harmax-n2"
    assert harmonic_exponent({"distance": "euclidean_softmax"}, 2) is None
    with pytest.raises(ValueError, match="unknown parameter"):
        resolve_toy_head({"distance": "euclidean_softmax", "p": 3})


# ---- settings in the config ------------------------------------------------------------------------------------


def test_settings_resolve_to_distinct_params_through_setting_overrides():
    cells = paper_cells()
    faithful = cells[("faithful", "grid", "modular_addition", "mlp", "euclidean", 0)]["params"]
    corrected = cells[("corrected", "grid", "modular_addition", "mlp", "euclidean", 0)]["params"]
    differ = {k for k in faithful if faithful[k] != corrected[k]}
    assert differ == {
        "setting",
        "epochs",
        "distance_power",
        "mlp_penalty_gradient",
        "embedding_init",
        "transformer",
        "ev_rows",
    }
    assert (faithful["epochs"], corrected["epochs"]) == (7000, 10000)
    perm = cells[("faithful", "grid", "permutation", "transformer", "baseline", 0)]["params"]
    assert perm["epochs"] == 10000 and perm["weight_decay"] == 0.005
    circle = cells[("faithful", "circle", "circle", "mlp-wd0", "euclidean", 50)]["params"]
    assert (circle["epochs"], circle["lr"], circle["distance_power"]) == (2000, 0.001, 2)


def test_an_override_matching_the_setting_reaches_only_that_settings_cells():
    section = paper_section()
    section = copy.deepcopy(section)
    section["overrides"].append({"where": {"setting": "corrected", "study": "n_sweep"}, "set": {"lr": 0.0123}})
    cells = toy_cells(section)
    changed = {(c["setting"], c["study"]) for c in cells if c["params"]["lr"] == 0.0123}
    assert changed == {("corrected", "n_sweep")}


def test_new_studies_have_their_cells_and_identity():
    cells = paper_cells()
    studies = {key[1] for key in cells}
    assert studies == {"grid", "data_efficiency", "circle", "two_points", "ablation", "n_sweep"}
    assert ("faithful", "n_sweep", "lattice-nsweep", "transformer", "euclidean-n10", 157) in cells
    assert ("corrected", "ablation", "family_tree-ablation", "mlp", "dot_harmax", 210) in cells
    assert len({k[-1] for k in cells if k[1] == "data_efficiency"}) == 3


def test_a_bad_ablation_head_names_its_key():
    section = paper_section()
    section["ablation"]["heads"].append({"distance": "dot_softmax"})
    with pytest.raises(ValueError, match=r"toy\.ablation\.heads\[4\]"):
        toy_cells(section)
