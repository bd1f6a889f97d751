"""The toy family's defaults (the one place they live) and resolve(), which fills them into a cell's params.

The workflow passes every value (harmonic/toy/grid.py builds a cell's params from config.yaml's `toy:` section; the
section-level keys the schema leaves out are filled from SECTION_DEFAULTS); a cell run by hand
(python -m harmonic.cli.toy_cell) gets the corrected setting's values below for what it leaves out.
"""

from harmonic.toy.models import harmonic_exponent, resolve_toy_head, toy_head_label

DEFAULTS = dict(
    setting="corrected",
    study="grid",
    task="modular_addition",
    model="mlp",
    seed=0,
    split="original",
    n_samples=1000,
    train_fraction=0.8,
    embed_dim=16,
    epochs=100,
    lr=2e-3,
    batch_size=32,
    weight_decay=0.01,
    embedding_penalty=0.01,
    mlp_penalty_gradient=True,
    distance_power=1,
    embedding_init="normal",
    transformer="prenorm",
    ev_rows="objects",
    device="cpu",
    threads=1,
    compile=False,
    grokking_threshold=0.9,
    grokking_window=20,
    head={"distance": "euclidean"},  # last: metrics.json keeps the key order it always had
)
# The two-point study (harmonic/toy/two_points.py) uses only these.
TWO_POINT_DEFAULTS = dict(
    setting=DEFAULTS["setting"],
    study="two_points",
    task="two_points",
    model="layer",
    seed=DEFAULTS["seed"],
    steps=10000,
    lr=0.01,
    distance_power=DEFAULTS["distance_power"],
    device=DEFAULTS["device"],
    threads=DEFAULTS["threads"],
    head=dict(DEFAULTS["head"]),
)
# Keys of the `toy:` section that every cell copies (schemas/toy.schema.yaml lists them without defaults).
SECTION_KEYS = ("split", "n_samples", "train_fraction", "embed_dim", "threads", "compile")
SECTION_DEFAULTS = {
    "settings": [DEFAULTS["setting"]],
    "overrides": [],
    **{key: DEFAULTS[key] for key in SECTION_KEYS},
}


def resolve_section(section):
    """The `toy:` section with SECTION_DEFAULTS filled in for the keys it leaves out (rules/common.smk
    register_family keeps it, so e.g. the cell jobs' threads are read from one place)."""
    return {**SECTION_DEFAULTS, **section}


def section_value(section, key):
    """A `toy:` section value, or its default when the config leaves it out."""
    return section.get(key, SECTION_DEFAULTS[key])


def resolve(params):
    """A cell's params over the defaults, the head spec resolved (and validated) by the library.

    Adds head_label and harmonic_exponent, the exponent on d the model is built with (paper form p ~ d^-n: the
    head's n times distance_power; the original raised d^2 to -n); None for heads without one (the baseline, the
    ablation heads).
    """
    base = TWO_POINT_DEFAULTS if params.get("study") == "two_points" else DEFAULTS
    hp = {**base, **params}
    hp["head"] = resolve_toy_head(hp["head"])
    hp["head_label"] = toy_head_label(hp["head"])
    hp["harmonic_exponent"] = harmonic_exponent(hp["head"], hp["distance_power"])
    return hp
