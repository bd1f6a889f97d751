"""One vision cell through its CLI on a tiny synthetic dataset: every output, and the three statuses."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harmonic.cli.vision_cell import main  # in-process: no second torch import
from harmonic.vision.data import file_digest, load_prepared, prepare_dataset

ROOT = Path(__file__).resolve().parents[2]
TINY = {"source": "synthetic", "num_classes": 4, "n_train": 120, "n_test": 40, "image_size": 8, "channels": 1}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny-synthetic"
    prepare_dataset("tiny-synthetic", TINY, path)
    return path


def run_cell(data_dir, out, *extra):
    main(["--data-dir", str(data_dir), "--out-dir", str(out), "--emissions-json", '{"enabled": false}', *extra])
    return json.loads((out / "metrics.json").read_text())


def test_ok_cell_writes_everything(data_dir, tmp_path):
    record = run_cell(
        data_dir,
        tmp_path,
        "--backbone",
        "mlp",
        "--distance",
        "cosine",
        "--epochs",
        "2",
        "--set",
        "pca_samples=0",
        "--set",
        "tensorboard=true",
    )
    assert record["status"] == "ok" and record["family"] == "vision"
    m = record["metrics"]
    for key in (
        "test_accuracy",
        "test_f1_macro",
        "test_final_accuracy",
        "val_accuracy",
        "pca_n_pcs_90",
        "pca_ev_pc1_pc2",
        "pca_effective_rank",
        "gflops_per_epoch",
        "seconds_per_epoch_per_gflop",
    ):
        assert m[key] is not None, key
    assert m["pca_samples"] == 40 and m["epochs_run"] == 2 and 1 <= m["best_epoch"] <= 2
    assert record["hyperparameters"]["harmonic_exponent"] == 1.0
    curves = (tmp_path / "curves.csv").read_text().splitlines()
    assert curves[0].startswith("epoch,lr,train_loss") and len(curves) == 3
    assert (tmp_path / "emissions.csv").exists() and any((tmp_path / "tensorboard").iterdir())


def test_weight_study_cell_saves_weights(tmp_path):
    """Digits-like images with a black frame: the frame pixels are the always-zero pixels the score looks at."""
    data_dir = tmp_path / "framed"
    prepare_dataset("framed-synthetic", TINY, data_dir)
    meta, arrays = load_prepared(data_dir)
    for key in ("x_train", "x_test"):
        arrays[key][:, :, [0, -1], :] = 0
        arrays[key][:, :, :, [0, -1]] = 0
    np.savez(data_dir / "data.npz", **arrays)
    meta["sha256"] = file_digest(data_dir / "data.npz")
    (data_dir / "meta.json").write_text(json.dumps(meta))
    record = run_cell(
        data_dir,
        tmp_path / "cell",
        "--backbone",
        "linear",
        "--distance",
        "euclidean",
        "--epochs",
        "1",
        "--set",
        "save_weights=true",
        "--set",
        "normalize=false",
    )
    weights = np.load(tmp_path / "cell" / "weights.npz")
    assert weights["weight"].shape == (4, 1, 8, 8) and weights["always_zero"].shape == (1, 8, 8)
    assert record["metrics"]["always_zero_pixels"] >= 28  # the 8x8 frame; more if some inner pixel never lights
    assert 0.0 <= record["metrics"]["interp_abs_tau0.01"] <= 1.0


def test_non_finite_loss_is_diverged(data_dir, tmp_path):
    record = run_cell(
        data_dir,
        tmp_path,
        "--backbone",
        "mlp",
        "--distance",
        "baseline",
        "--epochs",
        "5",
        "--set",
        'optimizer="sgd"',
        "--set",
        "batch_size=16",
        "--lr",
        "1e30",
    )
    assert record["status"] == "diverged"
    epoch = record["diverged_at"]["epoch"]
    assert record["metrics"]["epochs_run"] == epoch < 5
    assert len((tmp_path / "curves.csv").read_text().splitlines()) == epoch  # header + the finite epochs


def test_exception_is_failed_and_exits_zero(tmp_path):
    missing = tmp_path / "no-such-dataset"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harmonic.cli.vision_cell",
            "--data-dir",
            str(missing),
            "--out-dir",
            str(tmp_path / "cell"),
            "--epochs",
            "1",
            "--emissions-json",
            '{"enabled": false}',
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "cell" / "metrics.json").read_text())
    assert record["status"] == "failed" and "meta.json" in record["error"]["message"]


def test_bad_hyperparameter_fails_before_training(data_dir, tmp_path):
    record = run_cell(data_dir, tmp_path, "--set", "learning_rate=0.1")  # recorded, not raised (harmonic.cell)
    assert record["status"] == "failed" and "learning_rate" in record["error"]["message"]
    assert (tmp_path / "curves.csv").read_text() == ""  # no epoch was trained
