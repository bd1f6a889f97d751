"""Batched toy training: a cell gets the same numbers, to the last bit, alone or in any group (same device)."""

import numpy as np
import pytest
import torch

from harmonic.toy.batched import ToyGroup, group_key
from harmonic.toy.train import train_toy

BASE = dict(
    task="lattice",
    model="mlp",
    seed=0,
    split="original",
    n_samples=200,
    train_fraction=0.8,
    embed_dim=16,
    epochs=3,
    lr=2e-3,
    batch_size=32,
    weight_decay=0.01,
    embedding_penalty=0.01,
    head={"distance": "euclidean", "n": 1.0, "eps": 1e-8},
    mlp_penalty_gradient=True,
    distance_power=1,
    embedding_init="normal",
    transformer="prenorm",
)
# The options the faithful setting switches (what grow-crystals ran; docs/deviations.md (toy))
FAITHFUL = dict(mlp_penalty_gradient=False, distance_power=2, embedding_init="linear_uniform")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def assert_same_run(a, b, device="cpu"):
    """Every curve value, the final embedding and the divergence record identical (NaN equal to NaN) on the CPU.

    On CUDA, cuBLAS and the reduction kernels are chosen by shape (the number of cells is one), so a cell's sums
    are rounded in another order alone and in a group: there the runs agree to float32 rounding over a few epochs.
    """
    assert [r["epoch"] for r in a.curves] == [r["epoch"] for r in b.curves]
    curves_a = np.array([list(r.values()) for r in a.curves])
    curves_b = np.array([list(r.values()) for r in b.curves])
    if device == "cpu":
        np.testing.assert_array_equal(curves_a, curves_b)
        np.testing.assert_array_equal(a.embedding, b.embedding)
    else:
        np.testing.assert_allclose(curves_a, curves_b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.embedding, b.embedding, rtol=1e-4, atol=1e-6)
    assert a.diverged_at == b.diverged_at


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "model, head, options",
    [
        ("mlp", {"distance": "euclidean", "n": 1.0, "eps": 1e-8}, {}),
        ("mlp", {"distance": "baseline"}, {}),
        ("mlp", {"distance": "euclidean", "n": 1.0, "eps": 1e-8}, FAITHFUL),
        ("transformer", {"distance": "euclidean", "n": 2.0, "eps": 1e-8}, {}),
    ],
)
def test_a_group_of_three_seeds_equals_three_single_runs(device, model, head, options):
    hps = [dict(BASE, model=model, head=head, seed=seed, **options) for seed in (0, 1, 2)]
    together = ToyGroup(hps, device=device).run()
    for hp, result in zip(hps, together):
        alone = ToyGroup([hp], device=device).run()[0]
        assert_same_run(result, alone, device)
    assert not np.array_equal(together[0].embedding, together[1].embedding)  # the seeds did differ


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("compile", [False, True])
def test_cells_with_other_fractions_epochs_and_rates_do_not_change_a_cell(device, compile):
    """Padding to the longest epoch of the group and masking steps a cell does not have leaves it bit-identical,
    eager and compiled."""
    cell = dict(BASE, seed=5)
    others = [
        dict(BASE, seed=7, train_fraction=0.3, epochs=5, lr=1e-3),  # fewer steps per epoch, more epochs
        dict(BASE, seed=9, train_fraction=0.9, epochs=2, weight_decay=0.5, embedding_penalty=0.0),
    ]
    mixed = ToyGroup([others[0], cell, others[1]], device=device, compile=compile).run()
    assert_same_run(mixed[1], ToyGroup([cell], device=device, compile=compile).run()[0], device)
    assert [len(r.curves) for r in mixed] == [5, 3, 2]
    assert mixed[0].n_train == 60 and mixed[2].n_train == 180


def test_dropout_models_repeat_exactly_within_the_same_group():
    """The original transformer (dropout 0.1) draws its masks per group: the same group repeats bit for bit, and a
    cell alone gets other masks, hence other (but close at the start) numbers."""
    hps = [dict(BASE, model="transformer", transformer="original", seed=seed, epochs=2) for seed in (0, 1)]
    torch.manual_seed(123)
    first = ToyGroup(hps).run()
    torch.manual_seed(123)
    again = ToyGroup(hps).run()
    for a, b in zip(first, again):
        assert_same_run(a, b)
    assert all(np.isfinite(r.embedding).all() and len(r.curves) == 2 for r in first)


def test_the_faithful_penalty_leaves_the_tied_embedding_without_its_gradient():
    """mlp_penalty_gradient false: a huge penalty weight changes nothing (its gradient never reaches the tied
    embedding; the loss value it adds does not enter the update)."""
    faithful = dict(BASE, **FAITHFUL)
    small, large = ToyGroup([dict(faithful, embedding_penalty=0.01), dict(faithful, embedding_penalty=1e3)]).run()
    np.testing.assert_array_equal(small.embedding, large.embedding)
    corrected = ToyGroup([dict(BASE, embedding_penalty=1e3)]).run()[0]
    assert not np.array_equal(corrected.embedding, ToyGroup([BASE]).run()[0].embedding)


def test_a_diverging_cell_stops_alone():
    """A cell whose loss stops being finite is frozen and marked; its neighbours run on as if alone."""
    calm = dict(BASE, seed=1, epochs=4)
    wild = dict(BASE, seed=2, epochs=4, lr=1e30)
    calm_out, wild_out = ToyGroup([calm, wild]).run()
    assert wild_out.diverged_at is not None
    assert len(wild_out.curves) == wild_out.diverged_at["epoch"] - 1
    assert_same_run(calm_out, ToyGroup([calm]).run()[0])
    assert calm_out.diverged_at is None and len(calm_out.curves) == 4


def test_one_cell_learns_and_reports_what_the_loop_reported():
    result = train_toy(dict(BASE, epochs=30, n_samples=1000), log=lambda line: None)
    assert [r["epoch"] for r in result.curves] == list(range(1, 31))
    assert result.curves[-1]["train_acc"] > result.curves[0]["train_acc"]
    assert result.n_train == 800 and result.n_test == 200 and result.embedding.shape == (25, 16)


def test_the_compile_key_trains_a_cell_with_the_compiled_step():
    """A cell's `compile: true` (the toy section key) gets the compiled group's numbers, which round otherwise than
    the eager step's."""
    compiled = train_toy(dict(BASE, compile=True), log=lambda line: None)
    assert_same_run(compiled, ToyGroup([BASE], compile=True).run()[0])
    eager = train_toy(dict(BASE, compile=False), log=lambda line: None)
    assert not np.array_equal(compiled.embedding, eager.embedding)
    np.testing.assert_allclose(compiled.embedding, eager.embedding, rtol=1e-4, atol=1e-6)


def test_cells_that_differ_in_a_shared_value_cannot_share_a_group():
    assert group_key(BASE) == group_key(dict(BASE, seed=3, lr=0.1, epochs=9, train_fraction=0.5))
    assert group_key(BASE) == group_key(dict(BASE, study="data_efficiency", setting="faithful", device="cuda"))
    assert group_key(BASE) != group_key(dict(BASE, batch_size=16))
    assert group_key(BASE) != group_key(dict(BASE, **FAITHFUL))
    assert group_key(BASE) != group_key(dict(BASE, compile=True))
    with pytest.raises(ValueError, match="differ"):
        ToyGroup([BASE, dict(BASE, head={"distance": "baseline"})])


def test_each_epoch_visits_every_train_row_once_in_an_order_set_by_seed_and_epoch():
    group = ToyGroup([dict(BASE, seed=0), dict(BASE, seed=1, train_fraction=0.3)])
    orders = []
    for _ in range(2):
        group.epoch += 1
        group._shuffle()
        orders.append(group.order.clone())
    for order in orders:
        for s, n in enumerate(group.n_train):
            assert sorted(order[s, :n].tolist()) == list(range(n))
    assert not torch.equal(orders[0][0, :60], orders[1][0, :60])  # another epoch, another order
    assert not torch.equal(orders[0][0, :60], orders[0][1, :60])  # another seed, another order


def test_a_split_shorter_than_its_padded_batches_trains():
    """60 examples: 48 train rows in two padded batches of 32 (64 positions > 60 rows); the padding stays out."""
    small = dict(BASE, task="modular_addition", n_samples=60)
    result = train_toy(small)
    assert len(result.curves) == small["epochs"] and result.diverged_at is None
    assert all(np.isfinite(row["train_loss"]) for row in result.curves)
