#!/usr/bin/env python
"""One toy table from several toy_grid.py runs: rows are cells (keyed by cell_dir); where a cell ran more than once,
a finished row (status ok or diverged) wins over one stopped at a deadline, and otherwise the later table's row.

    python benchmarks/toy_grid_merge.py OUT_DIR RUN_TABLE [RUN_TABLE ...]
writes OUT_DIR/toy.parquet and OUT_DIR/toy.csv and prints the status count per study and model.
"""

import sys
from pathlib import Path

import pandas as pd


def merge(tables):
    rows = pd.concat([t.assign(_order=i) for i, t in enumerate(tables)], ignore_index=True)
    rows["_finished"] = rows["status"].isin(["ok", "diverged"])
    rows = rows.sort_values(["_finished", "_order"], kind="stable")
    rows = rows.drop_duplicates("cell_dir", keep="last").sort_index().drop(columns=["_order", "_finished"])
    # A column one run wrote as strings (aggregate.py's rule for mixed columns) and another as bools: strings, as there
    for column in rows.columns:
        if not pd.api.types.is_object_dtype(rows[column]):
            continue
        kinds = set(rows[column].dropna().map(type))
        if str in kinds and len(kinds) > 1:
            rows[column] = rows[column].map(lambda v: v if v is None or isinstance(v, float) else str(v))
    return rows


def main(out_dir, *paths):
    table = merge([pd.read_parquet(p) for p in paths])
    out = Path(out_dir)
    table.to_parquet(out / "toy.parquet", index=False)
    table.to_csv(out / "toy.csv", index=False)
    print(table.groupby(["cell.setting", "cell.study", "cell.model", "status"]).size().to_string())


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], *sys.argv[2:])
