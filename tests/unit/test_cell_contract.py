"""harmonic.cell, the one cell contract: resolve once, train under the meter, record whatever happens."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harmonic import cell

EMISSIONS_OFF = {"enabled": False}


def resolve(params):
    hp = {"seed": 0, "device": "cpu", "threads": 1, "steps": 2, **params}
    if hp["steps"] < 1:
        raise ValueError("steps must be >= 1")
    return hp


def train_ok(hp, ctx):
    assert ctx.meter is not None and ctx.device.type == "cpu"
    (ctx.out_dir / "streamed.txt").write_text("written while training")
    curves = pd.DataFrame({"step": range(hp["steps"]), "loss": [1.0, 0.5][: hp["steps"]]})
    return cell.Trained(
        metrics={"loss": 0.5, "draw": float(np.random.rand())},
        files={"curves.csv": curves, "embedding.npy": np.ones((2, 3)), "extra.json": {"a": 1}},
        summary={"loss": 0.5},
    )


def family(train=train_ok, **kwargs):
    return cell.Family(
        name="demo",
        outputs=("metrics.json", "curves.csv", "emissions.csv", "embedding.npy"),
        resolve=resolve,
        train=train,
        identity=lambda hp: {"dataset": "d", "model": "m", "head": "h", "seed": hp["seed"]},
        **kwargs,
    )


def read(out):
    return json.loads((out / "metrics.json").read_text())


def test_an_ok_cell_writes_its_files_and_metrics_last(tmp_path):
    out = tmp_path / "cell"
    result = cell.run(family(), {"steps": 2}, out, emissions=EMISSIONS_OFF)
    assert isinstance(result, cell.CellResult) and result.status == "ok"
    record = read(out)
    assert record["status"] == "ok" and record["family"] == "demo"
    assert record["hyperparameters"]["steps"] == 2 and record["cell"]["dataset"] == "d"
    assert record["emissions"]["tracking_mode"] == "disabled"
    assert record["provenance"]["code_version"] and record["provenance"]["torch"]
    assert np.load(out / "embedding.npy").shape == (2, 3)
    assert pd.read_csv(out / "curves.csv")["loss"].tolist() == [1.0, 0.5]
    assert json.loads((out / "extra.json").read_text()) == {"a": 1}
    assert (out / "streamed.txt").exists() and (out / "emissions.csv").exists()
    assert result.record == record


def test_the_seed_controls_the_draws(tmp_path):
    first = cell.run(family(), {"seed": 3}, tmp_path / "a", emissions=EMISSIONS_OFF)
    second = cell.run(family(), {"seed": 3}, tmp_path / "b", emissions=EMISSIONS_OFF)
    other = cell.run(family(), {"seed": 4}, tmp_path / "c", emissions=EMISSIONS_OFF)
    assert first.metrics["draw"] == second.metrics["draw"] != other.metrics["draw"]


def test_a_bad_value_fails_the_cell_with_every_output_and_returns(tmp_path):
    out = tmp_path / "cell"
    result = cell.run(family(), {"steps": 0}, out, cell={"dataset": "x"}, emissions=EMISSIONS_OFF)
    assert result.status == "failed" and result.error["type"] == "ValueError"
    record = read(out)
    assert record["status"] == "failed" and "steps" in record["error"]["message"]
    assert record["hyperparameters"] == {"steps": 0}  # nothing resolved: the raw params
    assert record["cell"] == {"dataset": "x"}
    for name in family().outputs:
        assert (out / name).exists(), name


def test_a_training_error_records_the_resolved_values_the_meter_and_placeholders(tmp_path):
    def broken(hp, ctx):
        raise RuntimeError("boom")

    placeholders = lambda hp: {"embedding.npy": np.zeros((0, 3)), "pca.json": {"ev": None}}  # noqa: E731
    out = tmp_path / "cell"
    result = cell.run(family(broken, placeholders=placeholders), {}, out, emissions=EMISSIONS_OFF)
    record = read(out)
    assert result.status == record["status"] == "failed" and record["error"]["type"] == "RuntimeError"
    assert record["hyperparameters"]["threads"] == 1  # resolved before the failure
    assert record["emissions"]["tracking_mode"] == "disabled"  # the meter closed and measured
    assert np.load(out / "embedding.npy").shape == (0, 3)
    assert json.loads((out / "pca.json").read_text()) == {"ev": None}
    assert (out / "curves.csv").read_text() == ""


@pytest.mark.parametrize("diverged_at, diverged", [({"step": 1}, False), (None, True)])
def test_divergence_is_a_status(tmp_path, diverged_at, diverged):
    def diverging(hp, ctx):
        return cell.Trained(metrics={"loss": float("nan")}, diverged_at=diverged_at, diverged=diverged)

    cell.run(family(diverging), {}, tmp_path, emissions=EMISSIONS_OFF)
    record = read(tmp_path)
    assert record["status"] == "diverged" and record["diverged_at"] == diverged_at
    assert record["metrics"]["loss"] is None  # strict JSON: NaN becomes null


def test_effective_hyperparameters_replace_the_resolved_ones(tmp_path):
    def effective(hp, ctx):
        return cell.Trained(hyperparameters={**hp, "autocast": "float32"})

    cell.run(family(effective), {}, tmp_path, emissions=EMISSIONS_OFF)
    assert read(tmp_path)["hyperparameters"]["autocast"] == "float32"


def test_data_check_is_recorded_and_its_failure_fails_the_cell(tmp_path):
    checked = lambda hp, ctx: {"dir": str(ctx.inputs["data_dir"]), "sha256": {"x": "abc"}}  # noqa: E731
    cell.run(family(check_data=checked), {}, tmp_path / "a", inputs={"data_dir": "d"}, emissions=EMISSIONS_OFF)
    assert read(tmp_path / "a")["data"] == {"dir": "d", "sha256": {"x": "abc"}}

    def missing(hp, ctx):
        raise FileNotFoundError("no data")

    cell.run(family(check_data=missing), {}, tmp_path / "b", emissions=EMISSIONS_OFF)
    assert read(tmp_path / "b")["error"]["type"] == "FileNotFoundError"


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, lambda: SystemExit(143)])
def test_interrupts_propagate_without_metrics(tmp_path, interrupt):
    def stopped(hp, ctx):
        raise interrupt()

    with pytest.raises((KeyboardInterrupt, SystemExit)):
        cell.run(family(stopped), {}, tmp_path, emissions=EMISSIONS_OFF)
    assert not (tmp_path / "metrics.json").exists()


def test_other_ranks_write_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    result = cell.run(family(), {}, tmp_path / "cell", emissions=EMISSIONS_OFF)
    assert result.status == "ok" and result.record is None
    assert not (tmp_path / "cell" / "metrics.json").exists()
    assert isinstance(cell.emissions_meter(tmp_path), cell.NoMeter)


def test_the_one_meter_builder_fills_the_config_defaults(tmp_path):
    meter = cell.emissions_meter(tmp_path, {"country_iso_code": "DEU"})
    assert meter.country_iso_code == "DEU"
    assert meter.measure_power_secs == cell.EMISSIONS_DEFAULTS["measure_power_secs"]
    assert meter.output_csv == tmp_path / "emissions.csv"


def test_emission_defaults_equal_the_config_schemas():
    """The workflow fills `emissions:` from schemas/config.schema.yaml; a cell run by hand from EMISSIONS_DEFAULTS."""
    import yaml

    schema = yaml.safe_load(open(Path(__file__).resolve().parents[2] / "schemas/config.schema.yaml"))
    properties = schema["properties"]["emissions"]["properties"]
    assert {key: spec["default"] for key, spec in properties.items()} == cell.EMISSIONS_DEFAULTS


def test_a_family_can_record_its_own_emissions_and_device(tmp_path):
    """A resumed run sums its segments' emissions; a torchrun rank names its own device."""

    def resumed(hp, ctx):
        return cell.Trained(emissions={"energy_kwh": 2.0}, device="cpu:7")

    cell.run(family(resumed), {}, tmp_path, emissions=EMISSIONS_OFF)
    record = read(tmp_path)
    assert record["emissions"] == {"energy_kwh": 2.0} and record["provenance"]["device"] == "cpu:7"
