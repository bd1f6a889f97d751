#!/usr/bin/env python3
"""Render a GPU check's summary.csv as the markdown table docs/ quotes (so doc tables are regenerated, not typed).

    python benchmarks/summary_table.py benchmarks/results/vision-h100/summary.csv \
        --columns dataset model head test_accuracy seconds_per_epoch images_per_second nvml_gpu_energy_kwh
"""

from __future__ import annotations

import argparse

import pandas as pd


def fmt(value) -> str:
    if isinstance(value, float):
        if value != value:  # NaN: a value the run did not produce
            return "–"
        return f"{value:.4g}"
    return str(value)


def markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv")
    parser.add_argument("--columns", nargs="+", help="columns to keep, in order (default: all)")
    parser.add_argument("--query", help="pandas query to select rows, e.g. \"model == 'mlp'\"")
    args = parser.parse_args()
    frame = pd.read_csv(args.csv)
    if args.query:
        frame = frame.query(args.query)
    if args.columns:
        missing = [c for c in args.columns if c not in frame.columns]
        if missing:
            parser.error(f"unknown columns {missing}; the file has {list(frame.columns)}")
        frame = frame[args.columns]
    print(markdown(frame))


if __name__ == "__main__":
    main()
