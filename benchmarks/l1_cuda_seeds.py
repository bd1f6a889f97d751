"""Errors of the CUDA and Triton L1 kernels against the fp32 reference over many seeds of one edge-case shape
(benchmarks/l1_cuda_check.py's edge_case: 77 rows, D = 100, 300 centres, ties, zero rows): whether a single case's
error is an outlier of the data or a property of the kernel.

    PYTHONPATH=. python3 benchmarks/l1_cuda_seeds.py --head chebyshev_smooth --seeds 24 --out <dir>   # one GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import l1_cuda_check as check  # noqa: E402 (benchmarks/ on sys.path: run as a script)
import torch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", nargs="+", default=["chebyshev_smooth"])
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for head in args.head:
        for x_grad in (True, False):
            for seed in range(args.seeds):
                row = check.edge_case(1000 + seed, head, torch.bfloat16, {}, x_grad)
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = {}
    for head in args.head:
        for key in ("dx_rel_err", "dW_rel_err", "dx_excess_rel_err", "dW_excess_rel_err"):
            for impl in ("", "triton_"):
                values = [r[impl + key] for r in rows if r["head"] == head and impl + key in r]
                if values:
                    summary[f"{head} {impl or 'cuda_'}{key}"] = {
                        "median": statistics.median(values),
                        "max": max(values),
                        "n": len(values),
                    }
    (args.out / "l1_cuda_seeds.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
