r"""Train one vision cell (dataset x backbone x head x seed) and write its results into --out-dir.

Outputs: curves.csv (per epoch), emissions.csv (codecarbon, offline), pca.json (explained-variance spectrum),
weights.npz (only for the MNIST weight study, `save_weights`), tensorboard/ (when switched on) and metrics.json,
written last and atomically, with the sha256 of data.npz (checked against meta.json first). Defaults:
harmonic/vision/config.py; training: harmonic/vision/train.py; outputs, failures and divergence: the cell contract
(harmonic/cell.py).

Example, without Snakemake (prepare the data first with python -m harmonic.cli.vision_data):
    python -m harmonic.cli.vision_cell --data-dir data/vision/mnist5k --backbone mlp --distance cosine \
        --epochs 2 --out-dir /tmp/cell
"""

import dataclasses
from pathlib import Path

from harmonic.cli import cell_parser, params_from, run_cell
from harmonic.vision.backbones import backbone_names
from harmonic.vision.config import CELL_DEFAULTS
from harmonic.vision.train import FAMILY, identity

FLAGS = ("backbone", "seed", "epochs", "batch_size", "lr", "device", "threads")


def main(argv=None):
    parser = cell_parser(__doc__)
    parser.add_argument("--data-dir", required=True, type=Path, help="prepared dataset folder (data.npz + meta.json)")
    parser.add_argument("--backbone", choices=backbone_names())
    parser.add_argument("--seed", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--device", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    family = dataclasses.replace(FAMILY, identity=lambda hp: identity(hp, args.data_dir))
    params = params_from(args, FLAGS, CELL_DEFAULTS["head"])
    return run_cell(family, args, params, inputs={"data_dir": args.data_dir})


if __name__ == "__main__":
    main()
