"""Energy and carbon accounting with codecarbon's OFFLINE tracker.

Why offline with an explicit country: the plain EmissionsTracker probes geolocation services and, without network,
silently assumes Canada/Quebec (emissions ~94x too low). The offline tracker uses the country the config names.
CPU power without RAPL is a TDP x load estimate and RAM a fixed estimate; GPU energy comes from NVML when a GPU
exists. `tracking_mode`, `cpu_model` and `gpu_model` go into every summary so readers know which estimate they see.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

SUMMARY_FIELDS = {
    "emissions_kg": "emissions",
    "energy_kwh": "energy_consumed",
    "duration_s": "duration",
    "cpu_energy_kwh": "cpu_energy",
    "gpu_energy_kwh": "gpu_energy",
    "ram_energy_kwh": "ram_energy",
    "cpu_power_w": "cpu_power",
    "gpu_power_w": "gpu_power",
    "ram_power_w": "ram_power",
    "tracking_mode": "tracking_mode",
    "cpu_model": "cpu_model",
    "gpu_model": "gpu_model",
    "country_iso_code": "country_iso_code",
}
NUMERIC_FIELDS = {
    k for k, v in SUMMARY_FIELDS.items() if k not in ("tracking_mode", "cpu_model", "gpu_model", "country_iso_code")
}


def _last_row(csv_path: Path) -> dict[str, str] | None:
    if not csv_path.exists():
        return None
    with csv_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows[-1] if rows else None


def _summary_from_row(row: dict[str, str] | None) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key, column in SUMMARY_FIELDS.items():
        value = (row or {}).get(column)
        if key in NUMERIC_FIELDS:
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = None
        summary[key] = value
    return summary


class EmissionsMeter:
    """Context manager around codecarbon's OfflineEmissionsTracker that writes `output_csv` atomically on exit.

    with EmissionsMeter("cell/emissions.csv", country_iso_code="USA") as meter:
        train(...)
        meter.flush()          # cumulative figures so far (per eval interval in long runs)
    meter.summary              # emissions_kg, energy_kwh, duration_s, tracking_mode, cpu_model, gpu_model, ...

    With enabled=False nothing is measured: the csv holds one row with the wall-clock duration and empty energy
    fields, and tracking_mode "disabled", so downstream tables show the gap instead of a made-up number.
    """

    def __init__(
        self,
        output_csv: str | os.PathLike,
        country_iso_code: str = "USA",
        measure_power_secs: float = 15,
        enabled: bool = True,
    ):
        self.output_csv = Path(output_csv)
        self.country_iso_code = country_iso_code
        self.measure_power_secs = measure_power_secs
        self.enabled = enabled
        self.summary: dict[str, Any] = {}
        self._tracker = None
        self._workdir: Path | None = None
        self._start = 0.0

    @property
    def _work_csv(self) -> Path:
        assert self._workdir is not None
        return self._workdir / "emissions.csv"

    def __enter__(self) -> EmissionsMeter:
        self._start = time.perf_counter()
        self.output_csv.parent.mkdir(parents=True, exist_ok=True)
        self._workdir = Path(tempfile.mkdtemp(prefix=".emissions.", dir=self.output_csv.parent))
        if self.enabled:
            from codecarbon import OfflineEmissionsTracker

            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            self._tracker = OfflineEmissionsTracker(
                country_iso_code=self.country_iso_code,
                measure_power_secs=self.measure_power_secs,
                output_dir=str(self._workdir),
                output_file="emissions.csv",
                log_level="error",
                save_to_file=True,
                allow_multiple_runs=True,
            )
            self._tracker.start()
        return self

    def flush(self) -> dict[str, Any]:
        """Cumulative emissions and energy since start (appends a row to the csv)."""
        if self._tracker is None:
            return self._disabled_summary()
        self._tracker.flush()
        return _summary_from_row(_last_row(self._work_csv))

    def _disabled_summary(self) -> dict[str, Any]:
        summary = {key: None for key in SUMMARY_FIELDS}
        summary.update(
            duration_s=time.perf_counter() - self._start,
            tracking_mode="disabled",
            country_iso_code=self.country_iso_code,
        )
        return summary

    def __exit__(self, *exc_info) -> None:
        try:
            if self._tracker is not None:
                self._tracker.stop()
            row = _last_row(self._work_csv)
            if row is not None:
                self.summary = _summary_from_row(row)
                os.replace(self._work_csv, self.output_csv)
            else:
                # Disabled, or codecarbon failed to measure: say so rather than invent a number.
                self.summary = self._disabled_summary()
                if self._tracker is not None:
                    self.summary["tracking_mode"] = "unavailable"
                with (self._workdir / "final.csv").open("w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=list(SUMMARY_FIELDS))
                    writer.writeheader()
                    writer.writerow(self.summary)
                os.replace(self._workdir / "final.csv", self.output_csv)
        finally:
            shutil.rmtree(self._workdir, ignore_errors=True)
