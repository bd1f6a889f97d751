r"""Train one toy cell (one task x model x head x seed, or one two-point run) and write its results into --out-dir.

Outputs: embedding.npy (final token embedding, for the PCA panels; the final 2 x 2 weight for the two-point study),
curves.csv (per-epoch train/test loss and accuracy; per-step loss and weight norm for the two-point study),
emissions.csv (codecarbon, offline) and metrics.json, written last and atomically. Defaults: harmonic/toy/config.py;
training: harmonic/toy/train.py; outputs, failures and divergence: the cell contract (harmonic/cell.py).

Example, without Snakemake:
    python -m harmonic.cli.toy_cell --task modular_addition --model mlp --distance euclidean --epochs 50 \
        --out-dir /tmp/cell
"""

from harmonic.cli import cell_parser, params_from, run_cell
from harmonic.toy.config import DEFAULTS
from harmonic.toy.datasets import EV_ROWS, SPLIT_MODES, TASKS
from harmonic.toy.models import MODELS
from harmonic.toy.train import FAMILY

FLAGS = ("task", "model", "split", "ev_rows", "distance_power", "seed", "epochs", "lr", "weight_decay")
FLAGS += ("train_fraction", "device")


def main(argv=None):
    parser = cell_parser(__doc__)
    parser.add_argument("--task", choices=TASKS)
    parser.add_argument("--model", choices=MODELS)
    parser.add_argument("--split", choices=SPLIT_MODES)
    parser.add_argument("--ev-rows", choices=EV_ROWS)
    parser.add_argument("--distance-power", type=int, choices=[1, 2], help="HarMax on d (1) or on d^2 (2)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--train-fraction", type=float)
    parser.add_argument("--device", help="auto | cpu | cuda")
    args = parser.parse_args(argv)
    return run_cell(FAMILY, args, params_from(args, FLAGS, DEFAULTS["head"]))


if __name__ == "__main__":
    main()
