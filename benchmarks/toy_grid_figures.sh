#!/bin/bash
# Render the toy notebooks' figures from a committed toy grid folder, offline, with the workflow's own notebooks:
#   bash benchmarks/toy_grid_figures.sh benchmarks/results/toy-grid-h200-faithful
# The cells' embeddings come out of the folder's */cells.tar.gz into a scratch folder (results/toy/..., as the table's
# cell_dir says; in name order, so a finished run's cells overwrite a deadline-stopped run's of the same path); the
# figures (PNG) go to <folder>/figures/<notebook>/.
set -euo pipefail
DIR=$(realpath "$1")
REPO=$(realpath "$(dirname "$0")/..")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
for archive in "$DIR"/*/cells.tar.gz; do tar -xzf "$archive"; done
for nb in toy_grokking toy_ev toy_pca toy_circle toy_data_efficiency toy_studies; do
  papermill --log-level WARNING --kernel python3 "$REPO/notebooks/$nb.ipynb" "$nb.ipynb" \
    -p table "$DIR/toy.parquet" -p figures_dir "$DIR/figures/$nb"
done
ls -R "$DIR/figures"
