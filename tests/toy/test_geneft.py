"""GenEFT: per-cell encoder / decoder learning rates in the batched engine, the study's cells and phases."""

import copy

import numpy as np
import pytest
import torch
from test_batched import BASE, assert_same_run

from harmonic.toy.batched import ToyGroup
from harmonic.toy.datasets import make_dataset
from harmonic.toy.geneft import decoder_columns, geneft_cells, is_encoder, phase_metrics
from harmonic.toy.grid import toy_cells
from harmonic.toy.models import build_from_hp

EUCLIDEAN = {"distance": "euclidean", "n": 1.0, "eps": 1e-8}


def test_equal_encoder_and_decoder_rates_give_the_plain_cell_bit_for_bit():
    plain = dict(BASE, seed=3)
    geneft = dict(plain, decoder_lr=plain["lr"], study="geneft")
    assert_same_run(ToyGroup([geneft]).run()[0], ToyGroup([plain]).run()[0])
    # and a plain cell in a group whose other cell has two rates keeps its numbers too
    other = dict(BASE, seed=4, decoder_lr=0.01)
    assert_same_run(ToyGroup([other, plain]).run()[1], ToyGroup([plain]).run()[0])


@pytest.mark.parametrize("model, head", [("mlp", EUCLIDEAN), ("transformer", {"distance": "baseline"})])
def test_a_zero_decoder_rate_freezes_the_decoder_and_trains_the_encoder(model, head):
    hp = dict(BASE, model=model, head=head, decoder_lr=0.0, weight_decay=0.0)
    result = ToyGroup([hp]).run()[0]
    data = make_dataset(hp["task"], seed=hp["seed"], n_samples=hp["n_samples"])
    torch.manual_seed(hp["seed"])
    start = dict(build_from_hp(hp, data.vocab_size, data.x_train.shape[1]).named_parameters())
    decoder = [name for name in result.state if not is_encoder(name)]
    assert decoder and "embedding.weight" in result.state
    for name in decoder:
        torch.testing.assert_close(result.state[name], start[name].detach(), rtol=0, atol=0)
    assert not torch.equal(result.state["embedding.weight"], start["embedding.weight"].detach())


def test_decoder_columns_follow_the_flat_parameter_order():
    named = {"embedding.weight": torch.zeros(3, 2), "body.0.weight": torch.zeros(2), "position": torch.zeros(1)}
    assert decoder_columns(named) == [False] * 6 + [True, True] + [False]


SECTION = dict(
    split="original",
    n_samples=200,
    train_fraction=0.8,
    embed_dim=8,
    threads=1,
    tasks=["equivalence"],
    models=["mlp"],
    heads=[{"distance": "baseline"}, {"distance": "euclidean"}],
    seeds=[0],
    train=dict(epochs=3, lr=0.002, batch_size=32, weight_decay=0.01, embedding_penalty=0.01),
    geneft=dict(
        settings=["corrected"],
        tasks=["modular_addition"],
        models=["mlp", "transformer"],
        fractions=[0.3, 0.6],
        encoder_lrs=[0.001, 0.01],
        decoder_lrs=[0.001],
        seeds=[0, 1],
        split="dedup",
        band_low=0.2,
        train={"epochs": 5},
    ),
)


def test_the_study_is_the_product_of_its_axes_with_its_values_in_each_cell():
    cells = [c for c in toy_cells(SECTION) if c["study"] == "geneft"]
    assert len(cells) == 2 * 2 * 2 * 2 * 1 * 2
    labels = {c["dataset"] for c in cells}
    assert "modular_addition-geneft-f0.3-e0.01-d0.001" in labels and len(labels) == 4
    cell = next(c for c in cells if c["dataset"] == "modular_addition-geneft-f0.3-e0.01-d0.001")
    params = cell["params"]
    assert (params["lr"], params["decoder_lr"], params["train_fraction"]) == (0.01, 0.001, 0.3)
    assert (params["split"], params["epochs"], params["band_low"]) == ("dedup", 5, 0.2)
    assert (cell["encoder_lr"], cell["decoder_lr"], cell["train_fraction"]) == (0.01, 0.001, 0.3)
    plain = [c for c in toy_cells(SECTION) if c["study"] == "grid"]
    assert plain and all("decoder_lr" not in c["params"] for c in plain)  # the other studies' params unchanged
    off = copy.deepcopy(SECTION)
    off["geneft"] = None
    assert geneft_cells(off, "cpu", "corrected") == []
    assert geneft_cells(SECTION, "cpu", "faithful") == []  # the study runs under its own settings only


def test_phase_indicators_from_the_final_test_accuracy():
    hp = dict(study="geneft", grokking_threshold=0.9, band_low=0.2)
    assert phase_metrics(hp, 0.95) == dict(generalised=1, in_transition=0)
    assert phase_metrics(hp, 0.5) == dict(generalised=0, in_transition=1)
    assert phase_metrics(hp, 0.05) == dict(generalised=0, in_transition=0)
    assert phase_metrics(dict(hp, study="grid"), 0.95) == {}
    assert np.isfinite(phase_metrics(hp, 0.9)["generalised"])
