#!/usr/bin/env python3
"""Mean +- standard deviation over seeds of a results table's metrics, per group, as the Markdown table docs/ quotes.

    python benchmarks/seed_summary.py benchmarks/results/mnist-single-layer-cpu/vision.parquet \
        --by cell.study cell.head cell.setting --metrics test_accuracy interp_rel_tau0.1

Only finished cells (status ok) count; the n column says how many seeds each row averages.
"""

from __future__ import annotations

import argparse

import pandas as pd
from summary_table import markdown  # benchmarks/summary_table.py (this folder is on sys.path)


def summary(table: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    missing = [c for c in by + metrics if c not in table.columns]
    if missing:
        raise SystemExit(f"unknown columns {missing}; the table has {sorted(table.columns)}")
    ok = table[table["status"] == "ok"]
    grouped = ok.groupby(by, sort=True)
    out = grouped.size().rename("n").to_frame()
    for metric in metrics:
        stats = grouped[metric].agg(["mean", "std"])
        out[metric] = [f"{m:.4g} +- {s:.2g}" if s == s else f"{m:.4g}" for m, s in zip(stats["mean"], stats["std"])]
    return out.reset_index()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", help="a results table (.parquet or .csv)")
    parser.add_argument("--by", nargs="+", required=True, help="group columns, e.g. cell.study cell.head")
    parser.add_argument("--metrics", nargs="+", required=True, help="metric columns to average")
    parser.add_argument("--query", help="pandas query selecting rows first, e.g. \"`cell.setting` == 'faithful'\"")
    args = parser.parse_args(argv)
    table = pd.read_parquet(args.table) if args.table.endswith(".parquet") else pd.read_csv(args.table)
    if args.query:
        table = table.query(args.query)
    print(markdown(summary(table, args.by, args.metrics)))


if __name__ == "__main__":
    main()
