"""The five algorithmic tasks of Baek et al., generated deterministically from a seed.

Every task is a set of token sequences with one answer token; inputs and answers share one vocabulary so the MLP's
head can tie its centres to the token embedding. Two split modes:

- ``original``: draw ``n_samples`` examples WITH replacement from all valid inputs and split the examples 80/20, as the
  original code does. The same input can then sit in train and test (split leakage; see docs/toy.md).
- ``dedup``: split over unique inputs, so no test input is ever seen in training.

Permutation composition has only 576 inputs; the original code enumerates them all and splits them, so its
``original`` mode has no leakage either.
"""

import itertools
from dataclasses import dataclass

import numpy as np

TASKS = ("lattice", "modular_addition", "equivalence", "family_tree", "permutation")
SPLIT_MODES = ("original", "dedup")


@dataclass
class ToyDataset:
    """A split toy task. ``x_*`` hold token ids (N x L), ``y_*`` the answer token (N)."""

    task: str
    vocab_size: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def lattice_examples(side=5):
    """Three points a, b, c of a side x side lattice -> the fourth parallelogram corner -a + b + c, when on the lattice."""
    points = [(i, j) for i in range(side) for j in range(side)]
    token = {p: side * p[0] + p[1] for p in points}
    xs, ys = [], []
    for a, b, c in itertools.product(points, repeat=3):
        d = (-a[0] + b[0] + c[0], -a[1] + b[1] + c[1])
        if d in token:
            xs.append((token[a], token[b], token[c]))
            ys.append(token[d])
    return np.array(xs), np.array(ys), side * side


def modular_addition_examples(p=31):
    """(x, y) -> (x + y) mod p."""
    pairs = np.array(list(itertools.product(range(p), repeat=2)))
    return pairs, (pairs[:, 0] + pairs[:, 1]) % p, p


def equivalence_examples(n=40, mod=5):
    """(x, y) -> token n if x = y (mod 5), else token n + 1."""
    pairs = np.array(list(itertools.product(range(n), repeat=2)))
    same = (pairs[:, 0] % mod) == (pairs[:, 1] % mod)
    return pairs, np.where(same, n, n + 1), n + 2


def family_tree_examples(n_nodes=126):
    """A complete binary tree in heap order (root 1, children 2k and 2k+1); (node, relation) -> the related node.

    Relation tokens follow the nodes: parent, grandparent, sibling.
    """
    parent, grandparent, sibling = n_nodes + 1, n_nodes + 2, n_nodes + 3
    xs, ys = [], []
    for node in range(1, n_nodes + 1):
        if node >= 2:
            xs.append((node, parent))
            ys.append(node // 2)
        if node >= 4:
            xs.append((node, grandparent))
            ys.append(node // 4)
        if node >= 2 and (node ^ 1) <= n_nodes:
            xs.append((node, sibling))
            ys.append(node ^ 1)
    return np.array(xs), np.array(ys), sibling + 1


def permutation_examples(k=4):
    """All pairs (g, h) of S_k -> the composition g o h, each permutation one token."""
    perms = list(itertools.permutations(range(k)))
    index = {p: i for i, p in enumerate(perms)}
    xs, ys = [], []
    for (i, g), (j, h) in itertools.product(enumerate(perms), repeat=2):
        xs.append((i, j))
        ys.append(index[tuple(g[h[t]] for t in range(k))])
    return np.array(xs), np.array(ys), len(perms)


EXAMPLES = {
    "lattice": lattice_examples,
    "modular_addition": modular_addition_examples,
    "equivalence": equivalence_examples,
    "family_tree": family_tree_examples,
    "permutation": permutation_examples,
}


def make_dataset(task, seed, split="original", n_samples=1000, train_fraction=0.8):
    """Generate and split one task; the same arguments always give the same arrays."""
    if task not in EXAMPLES:
        raise ValueError(f"unknown toy task {task!r}; allowed: {', '.join(TASKS)}")
    if split not in SPLIT_MODES:
        raise ValueError(f"unknown split mode {split!r}; allowed: {', '.join(SPLIT_MODES)}")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    xs, ys, vocab_size = EXAMPLES[task]()
    rng = np.random.default_rng(seed)
    if split == "original" and task != "permutation":
        chosen = rng.integers(0, len(xs), size=n_samples)  # with replacement: duplicates can straddle the split
    else:
        chosen = rng.permutation(len(xs))[: min(n_samples, len(xs))]  # unique inputs
    n_train = int(round(train_fraction * len(chosen)))
    train, test = chosen[:n_train], chosen[n_train:]
    return ToyDataset(task, vocab_size, xs[train], ys[train], xs[test], ys[test])


def overlap_fraction(dataset):
    """Fraction of test examples whose input also occurs in the training set (the split leakage)."""
    seen = {tuple(row) for row in dataset.x_train.tolist()}
    if len(dataset.x_test) == 0:
        return 0.0
    return float(np.mean([tuple(row) in seen for row in dataset.x_test.tolist()]))


# Which embedding rows the explained variance (EV) is computed over. The embedding has one row per vocabulary
# token, but not every token is an object of the task's structure: family-tree row 0 is never used and rows
# 127..129 are relations; equivalence rows 40, 41 are the two answers.
EV_ROWS = ("original", "objects")
EV_FIGURES = ("pc1_pc2", "cum_10")


def object_tokens(task):
    """The tokens whose geometry the task is about: lattice points, residues, numbers, tree nodes, permutations."""
    sizes = {"lattice": 25, "modular_addition": 31, "equivalence": 40, "permutation": 24}
    if task == "family_tree":
        return np.arange(1, 127)
    if task not in sizes:
        raise ValueError(f"unknown toy task {task!r}; allowed: {', '.join(TASKS)}")
    return np.arange(sizes[task])


def ev_rows(task, vocab_size, mode, figure):
    """Row indices of the embedding that the EV of `figure` (PC1+PC2 or the cumulative top 10) is computed over.

    mode "objects": object_tokens(task) for both. mode "original": what the original's figures used. PC1+PC2
    (Fig. 2, notebooks/final_figures.ipynb cell 2) keeps rows 1..126 for the family tree and 0..39 for equivalence,
    every row otherwise; the cumulative EV (Fig. 3a, from src/utils/crystal_metric.py) keeps rows 1..126 for the
    family tree (crystal_metric.py:105) and every row otherwise, equivalence answers included (:159).
    """
    if mode not in EV_ROWS:
        raise ValueError(f"ev_rows must be one of {EV_ROWS} (got {mode!r})")
    if figure not in EV_FIGURES:
        raise ValueError(f"figure must be one of {EV_FIGURES} (got {figure!r})")
    if mode == "objects" or task == "family_tree" or (task == "equivalence" and figure == "pc1_pc2"):
        return object_tokens(task)
    return np.arange(vocab_size)
