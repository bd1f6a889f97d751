"""The offline codecarbon wrapper: a real measurement offline, atomic csv, honest 'disabled' mode."""

import csv

from harmonic.emissions import EmissionsMeter


def test_offline_tracker_measures_and_writes_csv(tmp_path):
    out = tmp_path / "cell" / "emissions.csv"
    with EmissionsMeter(out, country_iso_code="DEU", measure_power_secs=1) as meter:
        sum(i * i for i in range(300_000))
        mid = meter.flush()
    assert mid["energy_kwh"] is not None and mid["energy_kwh"] >= 0
    summary = meter.summary
    assert summary["country_iso_code"] == "DEU"
    assert summary["duration_s"] > 0 and summary["energy_kwh"] > 0 and summary["emissions_kg"] > 0
    assert summary["tracking_mode"] and summary["cpu_model"]
    rows = list(csv.DictReader(out.open()))
    assert rows and rows[-1]["country_iso_code"] == "DEU"
    assert [p.name for p in out.parent.iterdir()] == ["emissions.csv"]  # no temporary leftovers


def test_disabled_meter_records_the_gap(tmp_path):
    out = tmp_path / "emissions.csv"
    with EmissionsMeter(out, enabled=False) as meter:
        pass
    assert meter.summary["tracking_mode"] == "disabled"
    assert meter.summary["energy_kwh"] is None and meter.summary["duration_s"] >= 0
    assert list(csv.DictReader(out.open()))[0]["tracking_mode"] == "disabled"
