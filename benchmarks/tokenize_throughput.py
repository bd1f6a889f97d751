#!/usr/bin/env python
"""Tokenization throughput of harmonic.llm.prepare (the code that writes every .bin) against plain tiktoken.

Baseline: one process, `encoding.encode_ordinary` per document (what a naive loop does). Ours: `write_split` with
1..N worker processes (ordered imap over document chunks, each chunk encoded with encode_ordinary_batch), timed
end to end including the file write and sha256. Reports MB/s in total and per worker core.

    python benchmarks/tokenize_throughput.py --workers 1 2 --repeat 4
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from harmonic.llm.prepare import read_shakespeare, write_split
from harmonic.llm.tokenizer import get_encoding


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeat", type=int, default=2, help="copies of the corpus (more text, steadier numbers)")
    parser.add_argument("--chunk-docs", type=int, default=4)
    args = parser.parse_args(argv)

    docs = [text for _, text in read_shakespeare()] * args.repeat
    megabytes = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    encoding = get_encoding()
    start = time.perf_counter()
    baseline_tokens = sum(len(encoding.encode_ordinary(d)) + 1 for d in docs)
    baseline_s = time.perf_counter() - start
    rows = [
        {
            "method": "tiktoken, 1 process",
            "workers": 1,
            "seconds": baseline_s,
            "mb_per_s": megabytes / baseline_s,
            "mb_per_s_per_core": megabytes / baseline_s,
            "tokens": baseline_tokens,
        }
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            start = time.perf_counter()
            info = write_split(docs, Path(tmp) / f"w{workers}.bin", workers=workers, chunk_docs=args.chunk_docs)
            seconds = time.perf_counter() - start
            assert info["tokens"] == baseline_tokens, "parallel tokenization changed the token count"
            rows.append(
                {
                    "method": "prepare.write_split",
                    "workers": workers,
                    "seconds": seconds,
                    "mb_per_s": megabytes / seconds,
                    "mb_per_s_per_core": megabytes / seconds / workers,
                    "tokens": info["tokens"],
                }
            )
        first = np.fromfile(Path(tmp) / f"w{args.workers[0]}.bin", dtype=np.uint16)
        for workers in args.workers[1:]:
            assert np.array_equal(first, np.fromfile(Path(tmp) / f"w{workers}.bin", dtype=np.uint16))
    print(f"{megabytes:.1f} MB of text, {baseline_tokens} tokens, {os.cpu_count()} cores visible")
    print("| method | workers | s | MB/s | MB/s per core |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['workers']} | {r['seconds']:.2f} | {r['mb_per_s']:.2f} | {r['mb_per_s_per_core']:.2f} |"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
