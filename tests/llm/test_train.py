"""Models x heads learn, resume is bit-identical on CPU, divergence is recorded, DDP (gloo) matches one process."""

import dataclasses
import functools
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from harmonic import cell
from harmonic.llm.checkpoint import CHECKPOINT_NAME
from harmonic.llm.config import accumulation, resolve_config
from harmonic.llm.data import TRAIN_STREAM, BatchSource, TokenBins
from harmonic.llm.models import build_model, special_tokens
from harmonic.llm.train import FAMILY, train, train_cell

REPO = Path(__file__).resolve().parents[2]
TINY_ARGS = {
    "gpt": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 16},
    "bert": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 16},
    "qwen2": {"n_layer": 1, "n_head": 2, "n_kv_head": 1, "n_embd": 32, "block_size": 16, "intermediate_size": 64},
}


@pytest.mark.parametrize("kind", ["gpt", "bert", "qwen2"])
@pytest.mark.parametrize("head", ["baseline", "euclidean", "cosine"])
def test_one_step_lowers_the_loss(shakespeare_bins, kind, head):
    torch.manual_seed(0)
    bins = TokenBins(shakespeare_bins, vocab_limit=512)
    model = build_model(kind, TINY_ARGS[kind], {"distance": head}, bins.vocab_size)
    assert model.head.centres is model.body.embedding.weight  # tied: the centres ARE the input embedding
    # A zero centre (BERT's [PAD] row by default) has no direction: the cosine head's gradient was inf there.
    assert (model.body.embedding.weight.norm(dim=1) > 0).all()
    source = BatchSource(bins, kind, 16, 8, 0, special_tokens(bins.vocab_size))
    batch = source.micro("train", TRAIN_STREAM, 0, 0, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    before = model(batch)
    before.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    optimizer.step()
    with torch.no_grad():
        after = model(batch)
    assert torch.isfinite(before) and after < before


def test_harmonic_exponent_defaults_to_sqrt_d(shakespeare_bins):
    model = build_model("gpt", TINY_ARGS["gpt"], {"distance": "euclidean"}, 1000)
    assert model.head.n == pytest.approx(32**0.5)
    assert build_model("gpt", TINY_ARGS["gpt"], {"distance": "euclidean", "n": 3.0}, 1000).head.n == 3.0


def test_head_kernel_switch_reaches_the_head_loss(monkeypatch):
    """The config's head_kernel picks HarmonicHead.loss(fused=...); a bad value is named before any work."""
    seen = []
    model = build_model("gpt", TINY_ARGS["gpt"], {"distance": "euclidean"}, 1000, head_kernel="reference")
    monkeypatch.setattr(model.head, "loss", lambda x, y, **kwargs: seen.append(kwargs["fused"]) or x.sum())
    tokens = torch.randint(0, 1000, (2, 9))
    model({"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]})
    model.fused = build_model("gpt", TINY_ARGS["gpt"], "euclidean", 1000, head_kernel="fused").fused
    model({"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]})
    assert seen == [False, True]
    assert build_model("gpt", TINY_ARGS["gpt"], "euclidean", 1000).fused == "auto"
    with pytest.raises(ValueError, match="head_kernel must be one of auto, fused, reference"):
        resolve_config({"head_kernel": "triton"})


def test_bert_masks_only_real_tokens(shakespeare_bins):
    bins = TokenBins(shakespeare_bins)
    special = special_tokens(bins.vocab_size)
    batch = BatchSource(bins, "bert", 512, 4, 0, special).micro("train", TRAIN_STREAM, 0, 0, 1)
    padded = batch["attention_mask"] == 0
    assert special["mask_token"] >= 50257 and (batch["input_ids"] == special["mask_token"]).any()
    assert (batch["labels"][padded] == -100).all() and (batch["input_ids"][padded] == special["pad_token"]).all()
    chosen = (batch["labels"] != -100).sum() / (~padded).sum()
    assert 0.1 < chosen < 0.2


def test_bad_config_is_named_before_work():
    with pytest.raises(ValueError, match="tokens_per_step 100 is not a multiple of block_size 16"):
        resolve_config({"tokens_per_step": 100, "model_args": {"block_size": 16}})
    cfg = resolve_config({"tokens_per_step": 96, "model_args": {"block_size": 16}})
    with pytest.raises(ValueError, match="do not split into micro-batches of 4 on 1"):
        accumulation(cfg, 4, 1)
    assert accumulation(cfg, 3, 2) == 1 and accumulation(cfg, 1, 2) == 3


class Killed(RuntimeError):
    """Raised by a step callback, as if the scheduler killed the job there."""


def kill_before(at: int):
    """on_step callback: the job dies just before step `at`."""

    def on_step(step, run):
        if step == at:
            raise Killed(f"simulated kill before step {step}")

    return on_step


def interrupt_before(at: int):
    """on_step callback: Ctrl-C just before step `at` (not an Exception: the cell contract lets it through)."""

    def on_step(step, run):
        if step == at:
            raise KeyboardInterrupt

    return on_step


def blow_up_at(at: int):
    """on_step callback: the weights turn NaN just before step `at`, so its loss and gradient are NaN."""

    def on_step(step, run):
        if step == at:
            with torch.no_grad():
                run.raw_model.body.embedding.weight.fill_(float("nan"))

    return on_step


def _curves(path):
    return pd.read_csv(path / "curves.csv")[["step", "train_loss", "val_loss", "val_accuracy", "lr"]]


def test_resume_after_interruption_is_bit_identical(shakespeare_bins, tiny_config, tmp_path):
    cfg = tiny_config(shakespeare_bins)
    whole = train(cfg, tmp_path / "whole")
    with pytest.raises(Killed):
        train(cfg, tmp_path / "resumed", on_step=kill_before(3))  # killed after the step-2 checkpoint
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    resumed = train(cfg, tmp_path / "resumed")
    pd.testing.assert_frame_equal(_curves(tmp_path / "whole"), _curves(tmp_path / "resumed"), check_exact=True)
    for key in ("train_loss", "val_loss", "val_accuracy", "grad_norm_mean", "clip_rate"):
        assert whole.metrics[key] == resumed.metrics[key], key


def test_checkpoint_of_other_hyperparameters_is_not_resumed(shakespeare_bins, tiny_config, tmp_path):
    with pytest.raises(Killed):
        train(tiny_config(shakespeare_bins), tmp_path / "cell", on_step=kill_before(3))
    other = train(tiny_config(shakespeare_bins, lr=2e-2), tmp_path / "cell")
    reference = train(tiny_config(shakespeare_bins, lr=2e-2), tmp_path / "fresh")
    assert other.metrics["val_loss"] == reference.metrics["val_loss"]


def test_nan_loss_stops_with_status_diverged(shakespeare_bins, tiny_config, tmp_path):
    result = train(tiny_config(shakespeare_bins), tmp_path / "cell", on_step=blow_up_at(3))
    assert result.status == "diverged"
    assert result.diverged_at["step"] == 3 and math.isnan(result.diverged_at["loss"])
    assert result.metrics["steps"] == 3


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one(shakespeare_bins, tiny_config, tmp_path):
    import json

    cfg = tiny_config(shakespeare_bins, max_steps=4, eval_interval=4, micro_batch=1)
    params = json.dumps(cfg)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    one = subprocess.run(
        [sys.executable, "-m", "harmonic.cli.llm_cell", "--params-json", params, "--out-dir", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",  # as rules/llm.smk launches it
            "harmonic.cli.llm_cell",
            "--params-json",
            params,
            "--out-dir",
            str(tmp_path / "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m1["status"] == m2["status"] == "ok"
    assert m2["hyperparameters"]["world_size"] == 2
    assert m1["hyperparameters"]["grad_accumulation"] == 2 * m2["hyperparameters"]["grad_accumulation"]
    for key in ("train_loss", "val_loss"):
        assert m2["metrics"][key] == pytest.approx(m1["metrics"][key], rel=1e-5), key


@pytest.mark.slow
def test_sigterm_exits_without_metrics_and_rerun_resumes(shakespeare_bins, tiny_config, tmp_path):
    import json
    import signal
    import time

    cfg = tiny_config(shakespeare_bins, max_steps=120, eval_interval=10)
    command = [
        sys.executable,
        "-m",
        "harmonic.cli.llm_cell",
        "--params-json",
        json.dumps(cfg),
        "--out-dir",
        str(tmp_path / "cell"),
    ]
    # The same thread count as this process: the in-process reference below must sum in the same order.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpt = tmp_path / "cell" / "ckpt.pt"
    deadline = time.time() + 120
    while not (ckpt.exists() and len(pd.read_csv(tmp_path / "cell" / "curves.csv")) >= 2) and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # as a scheduler does at its time limit
    assert proc.wait(timeout=60) != 0
    assert not (tmp_path / "cell" / "metrics.json").exists()
    assert torch.load(ckpt, weights_only=True)["state"]["step"] < 120, "the run finished before it was killed"

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads((tmp_path / "cell" / "metrics.json").read_text())["status"] == "ok"
    train(cfg, tmp_path / "whole")
    pd.testing.assert_frame_equal(_curves(tmp_path / "whole"), _curves(tmp_path / "cell"), check_exact=True)


def test_a_resumed_cell_counts_the_emissions_of_its_first_attempt(shakespeare_bins, tiny_config, tmp_path):
    """Through the cell contract: killed (not a failure: no metrics.json), rerun from the checkpoint; metrics.json's
    emissions add the checkpoint's (here made large so the sum is unmistakable) to the rerun's own."""
    out = tmp_path / "cell"
    killed = dataclasses.replace(FAMILY, train=functools.partial(train_cell, on_step=interrupt_before(3)))
    with pytest.raises(KeyboardInterrupt):
        cell.run(killed, tiny_config(shakespeare_bins), out, emissions={"enabled": False})
    assert not (out / "metrics.json").exists()
    ckpt = torch.load(out / CHECKPOINT_NAME, weights_only=True)
    ckpt["state"]["emissions"]["duration_s"] = 1000.0
    torch.save(ckpt, out / CHECKPOINT_NAME)
    result = cell.run(FAMILY, tiny_config(shakespeare_bins), out, emissions={"enabled": False})
    assert result.status == "ok" and result.metrics["steps"] == 6
    assert 1000.0 < result.record["emissions"]["duration_s"] < 1000.0 + 600
