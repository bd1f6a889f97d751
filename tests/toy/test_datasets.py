"""The five toy tasks: sizes, labels that follow each task's rule, determinism, and the two split modes."""

import itertools

import numpy as np
import pytest

from harmonic.toy.datasets import SPLIT_MODES, TASKS, make_dataset, overlap_fraction


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("split", SPLIT_MODES)
def test_sizes_and_vocabulary(task, split):
    data = make_dataset(task, seed=3, split=split)
    n = len(data.y_train) + len(data.y_test)
    assert n <= 1000 and len(data.x_train) == len(data.y_train) and len(data.x_test) == len(data.y_test)
    assert len(data.y_train) == round(0.8 * n)
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        assert array.min() >= 0 and array.max() < data.vocab_size
    if split == "original" and task != "permutation":
        assert n == 1000


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_data_other_seed_other_data(task):
    a, b, c = (make_dataset(task, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_labels_follow_each_task_rule():
    d = make_dataset("modular_addition", seed=0)
    assert np.array_equal(d.y_train, (d.x_train[:, 0] + d.x_train[:, 1]) % 31)
    d = make_dataset("equivalence", seed=0)
    assert np.array_equal(d.y_train, np.where(d.x_train[:, 0] % 5 == d.x_train[:, 1] % 5, 40, 41))
    d = make_dataset("lattice", seed=0)
    a, b, c = (np.stack(divmod(d.x_train[:, i], 5), 1) for i in range(3))
    assert np.array_equal(np.stack(divmod(d.y_train, 5), 1), -a + b + c)
    d = make_dataset("family_tree", seed=0)
    node, relation = d.x_train[:, 0], d.x_train[:, 1]
    expected = np.select([relation == 127, relation == 128, relation == 129], [node // 2, node // 4, node ^ 1])
    assert np.array_equal(d.y_train, expected)
    d = make_dataset("permutation", seed=0)
    perms = list(itertools.permutations(range(4)))
    for (i, j), k in zip(d.x_train[:50], d.y_train[:50]):
        assert perms[k] == tuple(perms[i][perms[j][t]] for t in range(4))


@pytest.mark.parametrize("task", TASKS)
def test_dedup_never_shows_a_test_input_in_training(task):
    assert overlap_fraction(make_dataset(task, seed=1, split="dedup")) == 0.0


@pytest.mark.parametrize(
    "task, low, high", [("modular_addition", 0.4, 0.7), ("equivalence", 0.25, 0.5), ("family_tree", 0.75, 0.95)]
)
def test_original_split_reproduces_the_papers_leakage(task, low, high):
    """The original samples with replacement and splits over examples (~56 %, ~38 %, ~87 % leakage)."""
    leak = np.mean([overlap_fraction(make_dataset(task, seed=s, split="original")) for s in range(3)])
    assert low < leak < high


def test_train_fraction_sets_the_split_and_bad_values_are_rejected():
    assert len(make_dataset("lattice", seed=0, train_fraction=0.3).y_train) == 300
    with pytest.raises(ValueError, match="train_fraction"):
        make_dataset("lattice", seed=0, train_fraction=1.0)
    with pytest.raises(ValueError, match="modular_addition"):
        make_dataset("modular", seed=0)
    with pytest.raises(ValueError, match="dedup"):
        make_dataset("lattice", seed=0, split="clean")
