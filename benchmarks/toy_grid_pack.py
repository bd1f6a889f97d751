#!/usr/bin/env python
"""Pack a toy_grid.py run for the trip home (few files, each under 16 MiB): the table (cell_dir made relative to the
repository root, results/toy/...), timing.json, cells.tar.gz (every cell's embedding.npy, the circle cells'
curves.csv) and curves.npz (per-epoch train/test accuracy of the grid and circle cells, float16).

    python benchmarks/toy_grid_pack.py /tmp/grid $OUT
"""

import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd


def main(run_dir, out_dir):
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    table = pd.read_parquet(run_dir / "toy.parquet")
    table["cell_dir"] = ["results/" + str(Path(d).relative_to(run_dir)) for d in table["cell_dir"]]
    table.to_parquet(out_dir / "toy.parquet", index=False)
    table.to_csv(out_dir / "toy.csv", index=False)
    shutil.copy(run_dir / "timing.json", out_dir / "timing.json")

    with tarfile.open(out_dir / "cells.tar.gz", "w:gz") as tar:
        for rel, study in zip(table["cell_dir"], table["cell.study"]):
            src = run_dir / Path(rel).relative_to("results")
            tar.add(src / "embedding.npy", arcname=f"{rel}/embedding.npy")
            if study in ("circle", "two_points"):  # the notebooks draw these cells' curves
                tar.add(src / "curves.csv", arcname=f"{rel}/curves.csv")

    keep = table[table["cell.study"].isin(["grid", "circle"])]
    if keep.empty:  # e.g. a two-point run: no per-epoch curves to keep
        return
    epochs = int(keep["epochs_run"].max())
    acc = np.full((len(keep), 2, epochs), np.nan, dtype=np.float16)
    for i, rel in enumerate(keep["cell_dir"]):
        curves = pd.read_csv(run_dir / Path(rel).relative_to("results") / "curves.csv")
        acc[i, 0, : len(curves)] = curves["train_acc"].to_numpy()
        acc[i, 1, : len(curves)] = curves["test_acc"].to_numpy()
    np.savez_compressed(out_dir / "curves.npz", cell_dir=keep["cell_dir"].to_numpy(dtype=str), acc=acc)
    for path in sorted(out_dir.iterdir()):
        print(f"{path.name}: {path.stat().st_size / 2**20:.2f} MiB")


if __name__ == "__main__":
    main(*sys.argv[1:3])
