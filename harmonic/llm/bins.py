"""The token-bin format on disk and its checks: flat uint16 `<split>.bin` files plus `meta.json`.

Both sides read this module: harmonic.llm.prepare (which writes the files) and harmonic.llm.data (which reads them at
training time), so the reader never imports the tokenizer and the writers.
"""

import json
import os
from pathlib import Path

import numpy as np

from harmonic.runs import file_digest, verified_data

SPLITS = ("train", "val")
META_NAME = "meta.json"
FORMAT = "flat uint16 GPT-2 token ids, EOT 50256 after every document, no header"


class BinFormatError(ValueError):
    """A token .bin or its meta.json is malformed; the message names the file."""


def check_bin_file(
    path: str | os.PathLike, vocab_size: int, with_hash: bool = True, block_tokens: int = 1 << 24
) -> dict:
    """Format check of one flat uint16 file: even byte length and every id < vocab_size. Returns tokens, sha256."""
    path = Path(path)
    if not path.is_file():
        raise BinFormatError(f"{path}: token file is missing")
    size = path.stat().st_size
    if size == 0:
        raise BinFormatError(f"{path}: token file is empty")
    if size % 2:
        raise BinFormatError(f"{path}: odd byte length {size}; a uint16 token file has an even length")
    data = np.memmap(path, dtype=np.uint16, mode="r")
    for start in range(0, len(data), block_tokens):
        block = np.asarray(data[start : start + block_tokens])
        top = int(block.max())
        if top >= vocab_size:
            where = start + int(np.argmax(block >= vocab_size))
            raise BinFormatError(f"{path}: token id {top} >= vocab size {vocab_size} (first at position {where})")
    return {"file": path.name, "tokens": size // 2, "sha256": file_digest(path) if with_hash else None}


def load_meta(data_dir: str | os.PathLike) -> dict:
    path = Path(data_dir) / META_NAME
    if not path.is_file():
        raise BinFormatError(
            f"{path}: meta.json is missing; prepare the data with python -m harmonic.cli.llm_prepare "
            "(or its `accept` for existing train.bin / val.bin)"
        )
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BinFormatError(f"{path}: not valid JSON ({err})") from None
    for key in ("vocab_size", "eot_token", "splits"):
        if key not in meta:
            raise BinFormatError(f"{path}: missing key {key!r}")
    return meta


def validate_bins(data_dir: str | os.PathLike, check_hash: bool = True, check_ids: bool = True) -> dict:
    """meta.json present, each split's file of the recorded length and hash, every id < vocab size."""
    data_dir = Path(data_dir)
    meta = load_meta(data_dir)
    for split in SPLITS:
        if split not in meta["splits"]:
            raise BinFormatError(f"{data_dir / META_NAME}: no entry for split {split!r}")
        entry = meta["splits"][split]
        path = data_dir / entry["file"]
        if not path.is_file():
            raise BinFormatError(f"{path}: token file is missing")
        size = path.stat().st_size
        if size % 2:
            raise BinFormatError(f"{path}: odd byte length {size}; a uint16 token file has an even length")
        if size // 2 != entry["tokens"]:
            raise BinFormatError(f"{path}: holds {size // 2} tokens, meta.json says {entry['tokens']}")
        if check_ids:
            check_bin_file(path, meta["vocab_size"], with_hash=False)
        if check_hash:
            actual = file_digest(path)
            if actual != entry["sha256"]:
                raise BinFormatError(
                    f"{path}: sha256 {actual} does not match meta.json ({entry['sha256']}); "
                    "the file changed after it was written"
                )
    return meta


def checked_token_data(data_dir: str | os.PathLike) -> dict:
    """train.bin and val.bin checked against the sha256 in meta.json before training (a changed file fails the
    cell); the record of the files and their hashes that metrics.json keeps."""
    meta = json.loads((Path(data_dir) / META_NAME).read_text())
    return verified_data(data_dir, {entry["file"]: entry["sha256"] for entry in meta["splits"].values()})
