"""Model stitching: the affine fit, CKA, the input sets, and a stitch of saved models end to end (tiny cells)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harmonic.cli import toy_cell, toy_stitch
from harmonic.toy.datasets import ToyDataset
from harmonic.toy.stitching import fit_affine, linear_cka, stitch_inputs, stitching_partners, summary_metrics

ROOT = Path(__file__).resolve().parents[2]

PARAMS = dict(task="modular_addition", model="mlp", n_samples=300, embed_dim=8, epochs=3, lr=0.01)


def test_an_exact_affine_map_is_recovered_with_r2_one():
    torch.manual_seed(0)
    x = torch.randn(50, 4, dtype=torch.float64)
    a, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    weight, r2 = fit_affine(x, x @ a + b)
    torch.testing.assert_close(weight[:4], a)
    torch.testing.assert_close(weight[4], b)
    assert r2 == pytest.approx(1.0)
    _, r2_noise = fit_affine(x, torch.randn(50, 3, dtype=torch.float64))  # unrelated targets fit badly
    assert r2_noise < 0.5


def test_linear_cka_is_one_under_rotation_and_scale_and_low_for_unrelated():
    torch.manual_seed(0)
    x = torch.randn(200, 5, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
    assert linear_cka(x, 3 * x @ q + 1) == pytest.approx(1.0)
    assert linear_cka(x, torch.randn(200, 5, dtype=torch.float64)) < 0.2


def test_fit_inputs_are_in_both_train_splits_and_eval_inputs_in_neither():
    x = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    a = ToyDataset("t", 20, x[:6], y[:6], x[6:], y[6:])  # train rows 0-5
    b = ToyDataset("t", 20, x[3:9], y[3:9], np.r_[x[:3], x[9:]], np.r_[y[:3], y[9:]])  # train rows 3-8
    fit, eval_x, eval_y = stitch_inputs(a, b)
    assert sorted(map(tuple, fit)) == [tuple(x[i]) for i in (3, 4, 5)]
    assert sorted(map(tuple, eval_x)) == [tuple(x[9])] and list(eval_y) == [9]


def test_partners_differ_in_exactly_one_of_seed_head_model():
    def cell(seed, head="euclidean", model="mlp", dataset="modular_addition"):
        return dict(setting="faithful", study="grid", dataset=dataset, model=model, head=head, seed=seed)

    cells = [cell(0), cell(1), cell(0, head="baseline"), cell(1, head="baseline"), cell(0, model="transformer")]
    cells.append(cell(1, dataset="lattice"))
    found = {(kind, c["seed"], c["head"], c["model"]) for kind, c in stitching_partners(cells[0], cells)}
    assert found == {
        ("seed", 1, "euclidean", "mlp"),
        ("head", 0, "baseline", "mlp"),
        ("model", 0, "euclidean", "transformer"),
    }
    assert [k for k, _ in stitching_partners(cells[0], cells, kinds=("seed",))] == ["seed"]


def test_summary_means_per_kind_and_skips_missing_values():
    pairs = [
        dict(kind="seed", stitched_acc=0.5, penalty=0.2, fit_r2=0.9, cka=0.8, front_acc=0.7),
        dict(kind="seed", stitched_acc=float("nan"), penalty=0.4, fit_r2=0.7, cka=0.6, front_acc=0.7),
    ]
    metrics = summary_metrics(pairs)
    assert metrics["stitch_partners_seed"] == 2 and "stitch_penalty_head" not in metrics
    assert metrics["stitch_acc_seed"] == 0.5 and metrics["stitch_penalty_seed"] == pytest.approx(0.3)


def train_cell(out, **params):
    toy_cell.main(
        [
            "--out-dir",
            str(out),
            "--params-json",
            json.dumps(dict(PARAMS, **params)),
            "--emissions-json",
            '{"enabled": false}',
        ]
    )
    return out


def test_saved_models_reload_and_stitch_a_model_into_itself_without_loss(tmp_path):
    """A model stitched into itself needs the identity map: R^2 1, CKA 1, no penalty. Another seed is a real pair."""
    a = train_cell(tmp_path / "a", seed=0)
    b = train_cell(tmp_path / "b", seed=1)
    state = torch.load(a / "model.pt", weights_only=True)
    assert "embedding.weight" in state and all(isinstance(v, torch.Tensor) for v in state.values())
    out = tmp_path / "stitch"
    cell = {"dataset": "modular_addition", "model": "mlp", "head": "euclidean", "seed": 0, "study": "stitch"}
    toy_stitch.main(
        ["--front", str(a), "--partner", f"seed={a}", "--partner", f"seed={b}", "--cell-json", json.dumps(cell)]
        + ["--out-dir", str(out)]
    )
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok" and record["cell"]["study"] == "stitch", record.get("error")
    pairs = pd.read_csv(out / "pairs.csv")
    self_pair, other = pairs.iloc[0], pairs.iloc[1]
    assert self_pair["fit_r2"] == pytest.approx(1.0) and self_pair["cka"] == pytest.approx(1.0)
    assert self_pair["stitched_acc"] == pytest.approx(self_pair["back_acc"]) and self_pair[
        "penalty"
    ] == pytest.approx(0)
    assert self_pair["front_acc"] == self_pair["back_acc"]
    assert other["back_seed"] == 1 and other["n_fit"] > 0 and other["n_eval"] > 0 and other["cka"] < 1
    assert record["metrics"]["stitch_partners_seed"] == 2


def test_a_failed_partner_is_a_recorded_failure(tmp_path):
    a = train_cell(tmp_path / "a", seed=0)
    broken = train_cell(tmp_path / "bad", seed=1, head={"distance": "no_such"})
    out = tmp_path / "stitch"
    toy_stitch.main(["--front", str(a), "--partner", f"seed={broken}", "--out-dir", str(out)])
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "failed" and "status 'failed'" in record["error"]["message"]
    assert (out / "pairs.csv").exists()


@pytest.mark.parametrize("transformer", ["prenorm", "original"])
def test_an_mlp_and_a_transformer_stitch_both_ways(tmp_path, transformer):
    """Both toy models expose their head's input; a cross-model pair runs in either direction."""
    mlp = train_cell(tmp_path / "mlp", seed=0)
    tf = train_cell(tmp_path / "tf", seed=0, model="transformer", transformer=transformer)
    for front, back in ((mlp, tf), (tf, mlp)):
        out = tmp_path / f"stitch-{front.name}"
        toy_stitch.main(["--front", str(front), "--partner", f"model={back}", "--out-dir", str(out)])
        record = json.loads((out / "metrics.json").read_text())
        assert record["status"] == "ok", record.get("error")
        assert record["metrics"]["stitch_partners_model"] == 1
        assert 0 <= record["metrics"]["stitch_acc_model"] <= 1 and record["metrics"]["stitch_r2_model"] <= 1
