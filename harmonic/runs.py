"""What every experiment cell shares: atomic outputs, provenance, seeding, device choice, metrics.json.

A cell's metrics.json is written last and atomically, so a killed job never leaves a file that looks complete,
and Snakemake (which treats an existing output as done) never mistakes a half-written result for a finished one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import random
import socket
import subprocess
import tempfile
import traceback
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATUSES = ("ok", "diverged", "failed")
REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------- atomic outputs
@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs get the mode any new file would get
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically; NaN/Inf become null (strict JSON), numpy/torch scalars become Python numbers."""
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/torch values and non-finite floats to strict-JSON-friendly Python objects."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks (data files and downloads are checked against published hashes)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DataIntegrityError(ValueError):
    """A data file's content differs from the hash recorded when it was prepared."""


def verified_digest(path: str | os.PathLike, expected: str) -> str:
    """The sha256 of a data file a cell is about to train on, checked against the hash its meta.json recorded.

    Hashing a large token file at every cell start costs minutes, so a matching digest is cached beside the file
    (.<name>.sha256 with the size and mtime it was computed at) and reused while both are unchanged; any write to
    the file changes its mtime and forces a full hash. In a read-only data folder the file is hashed every time.
    """
    path = Path(path)
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": expected}
    cache = path.with_name(f".{path.name}.sha256")
    try:
        if json.loads(cache.read_text()) == stamp:
            return expected
    except (OSError, ValueError):
        pass
    actual = file_digest(path)
    if actual != expected:
        raise DataIntegrityError(
            f"{path}: sha256 {actual} differs from {expected}, recorded when the data was prepared: the file changed"
            " since. Delete the data folder and run again to prepare it afresh."
        )
    with contextlib.suppress(OSError):
        atomic_write_json(cache, stamp)
    return actual


def verified_data(data_dir: str | os.PathLike, expected: dict[str, str]) -> dict[str, Any]:
    """Check each of a cell's data files (name -> sha256 from its meta.json); the record metrics.json keeps."""
    return {
        "dir": str(data_dir),
        "sha256": {name: verified_digest(Path(data_dir) / name, digest) for name, digest in expected.items()},
    }


# ------------------------------------------------------------------------------------------------ provenance
def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def code_version() -> dict[str, Any]:
    """The commit the code came from (and whether the tree had local edits), or the package version outside git.

    A copy of the tree without .git (a GPU machine, a cluster's staging area) can name its commit in the
    environment: HARMONIC_GIT_COMMIT (and optionally HARMONIC_GIT_DIRTY=1).
    """
    if os.environ.get("HARMONIC_GIT_COMMIT"):
        commit = os.environ["HARMONIC_GIT_COMMIT"]
        dirty = os.environ.get("HARMONIC_GIT_DIRTY", "0") == "1"
        return {"code_version": commit[:12] + ("-dirty" if dirty else ""), "git_commit": commit, "git_dirty": dirty}
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        try:
            version = metadata.version("harmonic-repro")
        except metadata.PackageNotFoundError:
            version = "unknown"
        return {"code_version": version, "git_commit": None, "git_dirty": None}
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    describe = _git("describe", "--always", "--dirty", "--tags") or commit[:12]
    return {"code_version": describe, "git_commit": commit, "git_dirty": dirty}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def provenance(device: torch.device | str | None = None) -> dict[str, Any]:
    """Code version, hardware and library versions: enough to tell two results apart later."""
    info: dict[str, Any] = dict(code_version())
    info.update(
        timestamp_utc=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        hostname=socket.gethostname(),
        platform=platform.platform(),
        python=platform.python_version(),
        cpu=_cpu_model(),
        cpu_count=os.cpu_count(),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        gpu_count=torch.cuda.device_count() if torch.cuda.is_available() else 0,
        gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        device=str(device) if device is not None else None,
    )
    for package in ("numpy", "triton", "transformers", "timm", "tiktoken", "codecarbon", "snakemake"):
        info[package] = _version(package)
    return info


# -------------------------------------------------------------------------------------------- seeds, device
def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices). `deterministic` also asks torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def resolve_device(spec: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; an explicit 'cuda' without a GPU is an error, not a silent CPU run."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} was requested but no CUDA GPU is visible (set device: auto or cpu)")
    return device


# ------------------------------------------------------------------------------------------- metrics.json
def error_record(exc: BaseException) -> dict[str, str]:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def write_metrics(
    path: str | os.PathLike,
    *,
    status: str,
    family: str,
    cell: dict[str, Any],
    hyperparameters: dict[str, Any],
    metrics: dict[str, Any],
    emissions: dict[str, Any] | None = None,
    diverged_at: dict[str, Any] | None = None,
    error: dict[str, Any] | BaseException | None = None,
    device: torch.device | str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a cell's metrics.json (atomically, last) in the layout docs/architecture.md describes."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    if isinstance(error, BaseException):
        error = error_record(error)
    record = {
        "status": status,
        "family": family,
        "cell": cell,
        "hyperparameters": hyperparameters,
        "metrics": metrics,
        "emissions": emissions or {},
        "diverged_at": diverged_at,
        "error": error,
        "data": data,
        "provenance": provenance(device),
    }
    atomic_write_json(path, record)
    return record


@contextlib.contextmanager
def failure_recorded(
    out_dir: str | os.PathLike,
    *,
    family: str,
    outputs: tuple[str, ...],
    cell: dict[str, Any],
    hyperparameters: dict[str, Any],
) -> Iterator[dict[str, Any]]:
    """The failure contract every cell script runs under: an ordinary exception becomes a recorded result.

    An Exception (bad values, a bug, a data check, CUDA out of memory) fails the same way on every attempt, so a
    retry would only waste a scheduler slot: every declared output still missing is created empty, metrics.json
    (last) holds status "failed" and the error, and the block ends normally, so the job exits 0 and the tables and
    figures show the failure. Resource and preemption failures are not Exceptions: the OOM killer, a time limit or
    a preemption ends the process by a signal (SIGTERM raises SystemExit in the LLM loop), the job exits non-zero
    without metrics.json, and the scheduler retries it with more memory and time (rules/resources.smk).

    Yields a dict {"cell", "hyperparameters", "data"} that the body refines as it resolves values, so a failure
    records the most resolved state. Under torchrun only rank 0 writes.
    """
    out_dir = Path(out_dir)
    record = {"cell": cell, "hyperparameters": hyperparameters, "data": None}
    try:
        yield record
    except Exception as exc:
        traceback.print_exc()
        if int(os.environ.get("RANK", "0")) != 0:
            return
        for name in outputs:
            if name != "metrics.json" and not (out_dir / name).exists():
                atomic_write_text(out_dir / name, "")
        write_metrics(
            out_dir / "metrics.json",
            status="failed",
            family=family,
            cell=record["cell"],
            hyperparameters=record["hyperparameters"],
            metrics={},
            data=record["data"],
            error=exc,
        )
        print(f"cell failed: {type(exc).__name__}: {exc}", flush=True)


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """Read a metrics.json, naming the file when it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a valid metrics.json ({exc})") from exc
