#!/usr/bin/env python
"""Markdown tables of a toy grid table (harmonic/cli/aggregate.py columns), for docs/results-toy.md.

    python benchmarks/toy_grid_report.py benchmarks/results/toy-grid-h200/toy.parquet

Grokking (grid study): per task x model x head, runs whose test accuracy stays > 90 % for 20 epochs, and the median
and mean of that first epoch over those runs; the same for train. EV: mean and standard deviation over seeds of the
explained variance of the top PCs of the token embedding. The circle: final accuracies, grokking epochs and PC1+PC2.
"""

import sys

import pandas as pd


def grokking(grid):
    rows = []
    for (task, model, head), g in grid.groupby(["cell.task", "cell.model", "cell.head"]):
        test = g["grok_epoch_test"].dropna()
        train = g["grok_epoch_train"].dropna()
        rows.append(
            {
                "task": task,
                "model": model,
                "head": head,
                "seeds": len(g),
                "reached 90% test": len(test),
                "median test epoch": test.median(),
                "mean test epoch": round(test.mean(), 1),
                "reached 90% train": len(train),
                "median train epoch": train.median(),
                "final test acc (mean)": round(g["final_test_acc"].mean(), 3),
            }
        )
    return pd.DataFrame(rows)


def explained_variance(grid):
    stats = grid.groupby(["cell.task", "cell.model", "cell.head"])[["ev_pc1", "ev_pc1_pc2", "ev_cum_10"]]
    table = stats.agg(["mean", "std"]).round(3)
    table.columns = [f"{metric} {stat}" for metric, stat in table.columns]
    return table.reset_index()


def main(path):
    table = pd.read_parquet(path)
    ok = table[table["status"] == "ok"]
    print(f"{len(table)} cells, status {table['status'].value_counts().to_dict()}\n")
    grid = ok[ok["cell.study"] == "grid"]
    print("## Grokking\n")
    print(grokking(grid).to_markdown(index=False))
    print("\n## Explained variance of the token embedding\n")
    print(explained_variance(grid).to_markdown(index=False))
    circle = ok[ok["cell.study"] == "circle"]
    if len(circle):
        columns = ["cell.model", "cell.head", "hp.weight_decay", "hp.lr", "hp.epochs", "final_train_acc"]
        columns += ["final_test_acc", "grok_epoch_train", "grok_epoch_test", "ev_pc1_pc2"]
        print("\n## Circle (modular addition, Fig. 4)\n")
        print(circle[columns].to_markdown(index=False))


if __name__ == "__main__":
    main(sys.argv[1])
