"""One cell contract for every experiment family (toy, vision, llm): resolve, train, record.

A family hands the contract a `Family` (its own resolve and train functions; nothing family-specific lives here)
and the raw parameters the workflow passes; `run` does the rest, the same way for every family:

    result = cell.run(family, params, out_dir, cell=identity, emissions=emissions_cfg, inputs={"data_dir": path})

1. resolve   hp = family.resolve(params): defaults filled (one place per family: harmonic/<family>/config.py),
             values checked; hp must hold "seed" and may hold "device" (default auto) and "threads".
2. set up    torch threads, device (harmonic.runs.resolve_device), seeds (harmonic.runs.seed_everything), the data
             check (family.check_data: hashes recorded in metrics.json) and the emissions meter (emissions_meter,
             the one builder of codecarbon's offline tracker).
3. train     trained = family.train(hp, ctx) under the meter; ctx is a CellContext (out_dir, device, meter, inputs,
             data, log). The train function RETURNS a Trained (metrics, files to write, divergence, effective
             hyperparameters) and never writes metrics.json; it may stream large or long-running outputs (curves
             of a long run, checkpoints) into ctx.out_dir itself.
4. record    write_outputs: Trained.files written atomically, every declared output made to exist, then
             metrics.json last and atomically (harmonic.runs.write_metrics: status, cell, hyperparameters (incl.
             setting and harmonic_exponent, from the family), metrics, emissions, data, provenance = code version,
             hardware, library versions). Returns a CellResult.

Failure contract (what harmonic.runs.failure_recorded promised, kept): an ordinary Exception anywhere in 1-4 is a
result, not a crash: the family's placeholders and empty files stand in for every missing declared output,
metrics.json says status "failed" with the error and the most resolved hyperparameters, and run() returns normally,
so the job exits 0 and no scheduler retry is spent on a failure that would repeat. SIGTERM / Ctrl-C / SystemExit
propagate: no metrics.json, the job exits non-zero and Snakemake reruns it. A non-finite loss is status "diverged"
(Trained.diverged_at, or Trained.diverged for a family that detects it without a step). Under torchrun only rank 0
writes (RANK != 0: no files, no meter).
"""

from __future__ import annotations

import contextlib
import json
import os
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harmonic.emissions import EmissionsMeter
from harmonic.runs import (
    atomic_output,
    atomic_write_json,
    atomic_write_text,
    resolve_device,
    seed_everything,
    write_metrics,
)

# The `emissions:` config section's defaults (schemas/config.schema.yaml documents the same values).
EMISSIONS_DEFAULTS = {"country_iso_code": "USA", "measure_power_secs": 15, "enabled": True}


@dataclass
class Trained:
    """What a family's train function returns; the contract writes it.

    metrics          the numbers of metrics.json's "metrics"
    files            output name -> content, written atomically by type: pandas DataFrame -> csv (no index),
                     numpy array -> .npy, dict/list -> JSON, str -> text, bytes -> as is
    hyperparameters  the effective hyperparameters to record (values known only at run time: device, autocast);
                     None records the resolved hp
    diverged_at      where a non-finite loss stopped training ({"epoch": k} / {"step": k}); status "diverged"
    diverged         status "diverged" without a step (a final state found non-finite)
    summary          a few numbers for the log line
    device           the device to record when it differs from the one the contract resolved (a torchrun rank's)
    emissions        the emissions to record instead of the meter's summary (a run resumed from a checkpoint adds
                     the earlier segments' figures to this one's)
    """

    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] | None = None
    diverged_at: dict[str, Any] | None = None
    diverged: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    emissions: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        return "diverged" if self.diverged or self.diverged_at is not None else "ok"


@dataclass
class CellContext:
    """What a train function gets besides its hyperparameters."""

    out_dir: Path
    device: torch.device
    meter: Any  # EmissionsMeter (entered), or NoMeter off rank 0; .flush() gives cumulative figures
    inputs: dict[str, Any] = field(default_factory=dict)  # paths the command line names (vision: data_dir)
    data: dict[str, Any] | None = None  # family.check_data's record (data files and their sha256)
    log: Callable[[str], None] = lambda line: print(line, flush=True)


@dataclass(frozen=True)
class Family:
    """A family's part of the contract: its names and functions, nothing else.

    outputs       the cell rule's declared outputs (rules/<family>.smk), metrics.json among them
    resolve       raw params -> resolved hyperparameters (defaults filled, bad values raise ValueError)
    train         (hp, CellContext) -> Trained
    identity      hp -> the cell's identity {dataset, model, head, seed} when the workflow passes none
    check_data    (hp, CellContext) -> the record of the data files checked (sha256), or None
    placeholders  hp or None -> {output name: content} standing in for a failed cell's missing outputs (else empty)
    """

    name: str
    outputs: tuple[str, ...]
    resolve: Callable[[dict], dict]
    train: Callable[[dict, CellContext], Trained]
    identity: Callable[[dict], dict]
    check_data: Callable[[dict, CellContext], dict | None] | None = None
    placeholders: Callable[[dict | None], dict[str, Any]] | None = None


@dataclass
class CellResult:
    """One cell's outcome: what metrics.json holds (record) and where it is."""

    status: str
    out_dir: Path
    cell: dict[str, Any]
    hyperparameters: dict[str, Any]
    metrics: dict[str, Any]
    emissions: dict[str, Any]
    diverged_at: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None  # metrics.json as written (None off rank 0)


class NoMeter(contextlib.nullcontext):
    """The meter of a process that measures nothing (torchrun ranks other than 0)."""

    summary: dict[str, Any] = {}

    def flush(self) -> dict[str, Any]:
        return {}


def is_writer() -> bool:
    """Only rank 0 of a torchrun job writes outputs and measures emissions."""
    return int(os.environ.get("RANK", "0")) == 0


def emissions_meter(out_dir: str | os.PathLike, settings: Mapping[str, Any] | None = None):
    """THE emissions meter of a cell: out_dir/emissions.csv from the `emissions:` config section over the defaults."""
    if not is_writer():
        return NoMeter()
    cfg = {**EMISSIONS_DEFAULTS, **(settings or {})}
    return EmissionsMeter(
        Path(out_dir) / "emissions.csv",
        country_iso_code=cfg["country_iso_code"],
        measure_power_secs=cfg["measure_power_secs"],
        enabled=cfg["enabled"],
    )


def write_file(path: Path, content: Any) -> None:
    """Write one output atomically, by the content's type (see Trained.files)."""
    if hasattr(content, "to_csv"):
        atomic_write_text(path, content.to_csv(index=False))
    elif isinstance(content, np.ndarray):
        with atomic_output(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, content)
    elif isinstance(content, (dict, list)):
        atomic_write_json(path, content)
    elif isinstance(content, bytes):
        with atomic_output(path) as tmp:
            tmp.write_bytes(content)
    else:
        atomic_write_text(path, str(content))


def run(
    family: Family,
    params: dict[str, Any],
    out_dir: str | os.PathLike,
    *,
    cell: dict[str, Any] | None = None,
    emissions: Mapping[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
) -> CellResult:
    """Resolve, train and record one cell under the failure contract (module docstring); returns its CellResult."""
    out_dir = Path(out_dir)
    state: dict[str, Any] = {"cell": dict(cell or {}), "hp": None, "data": None, "meter": None, "device": None}
    try:
        return _run(family, params, out_dir, state, emissions, inputs or {})
    except Exception as exc:  # an ordinary failure is a result too; SIGTERM / Ctrl-C propagate
        traceback.print_exc()
        return _record_failure(family, params, out_dir, state, exc)


def _run(family, params, out_dir, state, emissions, inputs) -> CellResult:
    state["hp"] = hp = family.resolve(dict(params))
    state["cell"] = state["cell"] or family.identity(hp)
    out_dir.mkdir(parents=True, exist_ok=True)
    if hp.get("threads") is not None:
        torch.set_num_threads(int(hp["threads"]))
    state["device"] = device = resolve_device(hp.get("device", "auto"))
    ctx = CellContext(out_dir=out_dir, device=device, meter=None, inputs=inputs)
    if family.check_data is not None:
        state["data"] = ctx.data = family.check_data(hp, ctx)
    seed_everything(int(hp["seed"]))
    ctx.log(f"{family.name} cell {state['cell']} on {device}\nhyperparameters: {json.dumps(hp, sort_keys=True)}")
    state["meter"] = ctx.meter = emissions_meter(out_dir, emissions)
    with ctx.meter:
        trained = family.train(hp, ctx)
    return _record(family, out_dir, state, trained)


def _record(family, out_dir, state, trained: Trained) -> CellResult:
    result = CellResult(
        status=trained.status,
        out_dir=out_dir,
        cell=state["cell"],
        hyperparameters=trained.hyperparameters if trained.hyperparameters is not None else state["hp"],
        metrics=trained.metrics,
        emissions=trained.emissions if trained.emissions is not None else state["meter"].summary,
        diverged_at=trained.diverged_at,
        data=state["data"],
        summary=trained.summary,
    )
    if is_writer():
        result.record = write_outputs(
            family,
            out_dir,
            trained,
            cell=result.cell,
            hyperparameters=result.hyperparameters,
            emissions=result.emissions,
            device=trained.device or state["device"],
            data=result.data,
        )
    print(f"status {result.status}: {json.dumps(result.summary)}", flush=True)
    return result


def write_outputs(
    family: Family,
    out_dir: str | os.PathLike,
    trained: Trained,
    *,
    cell: dict[str, Any],
    hyperparameters: dict[str, Any],
    emissions: dict[str, Any] | None = None,
    device: torch.device | str | None = None,
    data: dict[str, Any] | None = None,
    status: str | None = None,
    error: dict[str, Any] | BaseException | None = None,
) -> dict[str, Any]:
    """Write a trained cell's files, every other declared output, then metrics.json (last); returns its record.

    run() calls it; a runner that trains many cells in one process (benchmarks/toy_grid.py) records each through it,
    so its cells look exactly like the workflow's. `status` / `error` override the Trained's status (a deadline).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, content in trained.files.items():
        write_file(out_dir / name, content)
    _fill_missing(family, out_dir, hyperparameters)
    return write_metrics(
        out_dir / "metrics.json",
        status=status or trained.status,
        family=family.name,
        cell=cell,
        hyperparameters=hyperparameters,
        metrics=trained.metrics,
        emissions=emissions,
        diverged_at=trained.diverged_at,
        error=error,
        device=device,
        data=data,
    )


def _fill_missing(family: Family, out_dir: Path, hp: dict | None) -> None:
    """Every declared output exists: the family's placeholder where it has one, else an empty file (placeholders
    of undeclared files, e.g. vision's pca.json, are written too)."""
    placeholders = family.placeholders(hp) if family.placeholders is not None else {}
    for name in dict.fromkeys([*family.outputs, *placeholders]):
        if name == "metrics.json" or (out_dir / name).exists():
            continue
        if name in placeholders:
            write_file(out_dir / name, placeholders[name])
        else:
            atomic_write_text(out_dir / name, "")


def _record_failure(family, params, out_dir, state, exc: Exception) -> CellResult:
    meter = state["meter"]
    result = CellResult(
        status="failed",
        out_dir=out_dir,
        cell=state["cell"],
        hyperparameters=state["hp"] if state["hp"] is not None else dict(params),
        metrics={},
        emissions=meter.summary if meter is not None else {},
        data=state["data"],
    )
    if is_writer():
        out_dir.mkdir(parents=True, exist_ok=True)
        _fill_missing(family, out_dir, state["hp"])
        result.record = write_metrics(
            out_dir / "metrics.json",
            status="failed",
            family=family.name,
            cell=result.cell,
            hyperparameters=result.hyperparameters,
            metrics={},
            emissions=result.emissions,
            data=result.data,
            error=exc,
            device=state["device"],
        )
        result.error = result.record["error"]
    print(f"cell failed: {type(exc).__name__}: {exc}", flush=True)
    return result
