"""Atomic outputs, metrics.json layout, provenance and device choice."""

import json
import math

import numpy as np
import pytest
import torch

from harmonic import runs


def test_atomic_output_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    with pytest.raises(RuntimeError):
        with runs.atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_write_keeps_the_old_file_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "a.json"
    runs.atomic_write_json(target, {"v": 1})
    with pytest.raises(TypeError):
        runs.atomic_write_json(target, {"v": object()})  # not serialisable: the old content must survive
    assert json.loads(target.read_text()) == {"v": 1}


def test_write_metrics_layout_and_strict_json(tmp_path):
    path = tmp_path / "metrics.json"
    record = runs.write_metrics(
        path,
        status="diverged",
        family="toy",
        cell={"dataset": "mod_add", "seed": 3},
        hyperparameters={"harmonic_exponent": 1.0, "lr": np.float32(2e-3)},
        metrics={"loss": math.nan, "acc": torch.tensor(0.5)},
        diverged_at={"epoch": 12},
    )
    on_disk = json.loads(path.read_text())
    assert on_disk["status"] == "diverged" and on_disk["diverged_at"] == {"epoch": 12}
    assert on_disk["metrics"] == {"loss": None, "acc": 0.5}
    assert on_disk["hyperparameters"]["lr"] == pytest.approx(2e-3)
    for key in ("code_version", "git_commit", "torch", "python", "cpu"):
        assert key in on_disk["provenance"]
    assert record["family"] == "toy"


def test_write_metrics_records_errors_and_rejects_unknown_status(tmp_path):
    try:
        raise ValueError("boom")
    except ValueError as exc:
        record = runs.write_metrics(
            tmp_path / "m.json", status="failed", family="toy", cell={}, hyperparameters={}, metrics={}, error=exc
        )
    assert record["error"]["type"] == "ValueError" and "boom" in record["error"]["traceback"]
    with pytest.raises(ValueError, match="status must be one of"):
        runs.write_metrics(tmp_path / "x.json", status="done", family="toy", cell={}, hyperparameters={}, metrics={})


def test_read_metrics_names_a_corrupt_file(tmp_path):
    bad = tmp_path / "metrics.json"
    bad.write_text('{"status": "ok"')
    with pytest.raises(ValueError, match="metrics.json"):
        runs.read_metrics(bad)


def test_seeding_repeats_random_streams():
    runs.seed_everything(7)
    a = (torch.rand(3), np.random.rand(3))
    runs.seed_everything(7)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_resolve_device():
    assert runs.resolve_device("cpu").type == "cpu"
    assert runs.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            runs.resolve_device("cuda")


def test_code_version_from_environment_outside_git(monkeypatch):
    monkeypatch.setenv("HARMONIC_GIT_COMMIT", "0123456789abcdef0123")
    monkeypatch.setenv("HARMONIC_GIT_DIRTY", "1")
    info = runs.code_version()
    assert info == {"code_version": "0123456789ab-dirty", "git_commit": "0123456789abcdef0123", "git_dirty": True}
