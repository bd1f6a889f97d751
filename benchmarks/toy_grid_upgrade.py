#!/usr/bin/env python
"""Bring the H200 toy tables of commit bd39bd8 (run before the toy settings landed) to today's columns.

That run's cells used what are now the corrected model options; its table lacks their hp.* columns and computed EV
over every embedding row. This fills the options it ran with (distance_power 1, embedding_init normal,
mlp_penalty_gradient true, transformer prenorm), recomputes the EV columns from the stored embeddings with
today's ev_rows "objects" (harmonic/toy/train.py embedding_metrics; the old all-rows values are kept as
ev_*_all_rows), and records the commit that ran (the device ran an untracked copy, so the table says 762a113-dirty).
It also writes one table per exponent on d (toy-exponent1/2.parquet) for the claims, which compare one head
named `euclidean` with the baseline.

    python benchmarks/toy_grid_upgrade.py benchmarks/results/toy-grid-h200
"""

import io
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

from harmonic.toy.train import embedding_metrics

RAN_WITH = {"hp.distance_power": 1, "hp.embedding_init": "normal", "hp.mlp_penalty_gradient": True}
RAN_WITH |= {"hp.transformer": "prenorm", "hp.ev_rows": "objects"}
COMMIT = "bd39bd8"


def main(folder):
    folder = Path(folder)
    embeddings = {}
    for tarball in sorted(folder.glob("*/cells.tar.gz")):
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                if member.name.endswith("embedding.npy"):
                    embeddings[str(Path(member.name).parent)] = np.load(io.BytesIO(tar.extractfile(member).read()))
    table = pd.read_parquet(folder / "toy.parquet")
    for column in ("ev_pc1", "ev_pc1_pc2", "ev_cum_10"):
        if f"{column}_all_rows" not in table:  # kept from the first upgrade when run again
            table[f"{column}_all_rows"] = table[column]
    for column, value in RAN_WITH.items():
        table[column] = value
    for i, row in table.iterrows():
        hp = {"task": row["hp.task"], "ev_rows": row["hp.ev_rows"]}
        for key, value in embedding_metrics(hp, embeddings[row["cell_dir"]]).items():
            table.loc[i, key] = value
    table["code_version"] = COMMIT
    table.to_parquet(folder / "toy.parquet", index=False)
    table.to_csv(folder / "toy.csv", index=False)
    print(f"{len(table)} cells: EV over object rows, options and commit {COMMIT} recorded")

    # One table per exponent on d, each with one harmonic head named as today: `euclidean`, whose exponent is
    # n * distance_power (the run's euclidean-n2, n = 2 on d, is today's euclidean with distance_power 2).
    table[table["cell.head"] != "euclidean-n2"].to_parquet(folder / "toy-exponent1.parquet", index=False)
    exponent2 = table[table["cell.head"] != "euclidean"].copy()
    renamed = exponent2["cell.head"] == "euclidean-n2"
    exponent2.loc[renamed, ["cell.head", "hp.head_label"]] = "euclidean"
    exponent2.loc[renamed, "hp.head.n"] = 1.0
    exponent2.loc[renamed, "hp.distance_power"] = 2
    exponent2.to_parquet(folder / "toy-exponent2.parquet", index=False)


if __name__ == "__main__":
    main(sys.argv[1])
