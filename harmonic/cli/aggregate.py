r"""Collect cells' metrics.json files (any family) into one tidy table: a row per cell.

Columns: status, family, cell.* (dataset, model, head, seed, and any extras the family records), hp.* (effective
hyperparameters, nested keys joined with '.'), the flat metrics, emissions.*, data.* (the data folder and the sha256
of each data file the cell checked and trained on), diverged_at, error_type/error_message,
provenance.code_version, and cell_dir (where the cell's other files are, for figures that need them).

    python -m harmonic.cli.aggregate --parquet results/tables/toy.parquet --csv results/tables/toy.csv \
        results/toy/*/*/*/*/seed*/metrics.json
"""

import argparse
import json
from pathlib import Path

import pandas as pd

from harmonic.runs import atomic_output, read_metrics


def flatten(prefix, value, row):
    """Nested dicts become prefix.key columns; lists become JSON text so every cell of the table is a scalar."""
    if isinstance(value, dict):
        for key, inner in value.items():
            flatten(f"{prefix}.{key}" if prefix else key, inner, row)
    elif isinstance(value, (list, tuple)):
        row[prefix] = json.dumps(value)
    else:
        row[prefix] = value


def row_of(path):
    record = read_metrics(path)
    row = {"status": record["status"], "family": record["family"]}
    flatten("cell", record.get("cell", {}), row)
    flatten("hp", record.get("hyperparameters", {}), row)
    flatten("", record.get("metrics", {}), row)
    flatten("emissions", record.get("emissions") or {}, row)
    flatten("data", record.get("data") or {}, row)
    diverged = record.get("diverged_at")
    row["diverged_at"] = json.dumps(diverged) if diverged else None
    error = record.get("error") or {}
    row["error_type"], row["error_message"] = error.get("type"), error.get("message")
    row["code_version"] = (record.get("provenance") or {}).get("code_version")
    row["cell_dir"] = str(Path(path).parent)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics.json files, one per cell")
    parser.add_argument("--parquet", required=True, type=Path)
    parser.add_argument("--csv", required=True, type=Path)
    args = parser.parse_args(argv)

    table = pd.DataFrame([row_of(path) for path in args.metrics])
    # Mixed None/number columns (grokking "never") stay numeric with NaN; parquet needs one type per column.
    for column in table.columns:
        if table[column].dtype == object:
            values = table[column].dropna()
            if len(values) and values.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all():
                table[column] = pd.to_numeric(table[column])
            elif len(values) and not values.map(lambda v: isinstance(v, str)).all():
                table[column] = table[column].map(lambda v: None if v is None else str(v))
    with atomic_output(args.parquet) as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_output(args.csv) as tmp:
        table.to_csv(tmp, index=False)
    counts = table["status"].value_counts().to_dict()
    print(f"{len(table)} cells -> {args.parquet}, {args.csv}; status {counts}")


if __name__ == "__main__":
    main()
