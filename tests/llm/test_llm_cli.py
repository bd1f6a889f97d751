"""harmonic.cli.llm_cell by hand: its flags reach the cell's hyperparameters (a missing data directory fails the
cell before any training, so the record shows what was resolved)."""

import json

from harmonic.cli import llm_cell


def test_flags_reach_the_recorded_hyperparameters(tmp_path):
    out = tmp_path / "cell"
    argv = ["--data-dir", str(tmp_path / "no-data"), "--model", "bert", "--distance", "euclidean", "--n", "3"]
    argv += [
        "--max-steps",
        "3",
        "--seed",
        "4",
        "--set",
        "lr=0.01",
        "--set",
        "warmup_steps=1",
        "--emissions-json",
        '{"enabled": false}',
    ]
    result = llm_cell.main(argv + ["--out-dir", str(out)])
    record = json.loads((out / "metrics.json").read_text())
    assert result.status == record["status"] == "failed" and record["error"]["type"] == "FileNotFoundError"
    hp = record["hyperparameters"]
    assert (hp["model"], hp["max_steps"], hp["seed"], hp["lr"]) == ("bert", 3, 4, 0.01)
    assert hp["head"] == {"distance": "euclidean", "n": 3.0} and hp["emissions"]["enabled"] is False
    assert record["cell"] == {"dataset": "no-data", "model": "bert", "head": "euclidean", "seed": 4}
