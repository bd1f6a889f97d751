r"""Train one language-model cell (model x head x seed) and write its results into --out-dir.

    python -m harmonic.cli.llm_cell --model gpt --data-dir data/shakespeare --distance euclidean --max-steps 20 \
        --out-dir /tmp/llm-cell
    torchrun --standalone --nproc_per_node 2 -m harmonic.cli.llm_cell --params-json ... --out-dir ...

Outputs: curves.csv (per eval), grad_stats.csv (every stats_interval steps), emissions.csv, analysis.json,
parallelogram.csv, tb/ (TensorBoard), ckpt.pt while running (kept with keep_checkpoint), and metrics.json last
(rank 0 only). Defaults: harmonic/llm/config.py; training: harmonic/llm/train.py; the token-file check, outputs,
failures and divergence: the cell contract (harmonic/cell.py). SIGTERM / Ctrl-C exit non-zero without metrics.json
and a rerun resumes from ckpt.pt.
"""

import json
from pathlib import Path

from harmonic import cell
from harmonic.cli import cell_parser, params_from
from harmonic.llm.checkpoint import CHECKPOINT_NAME
from harmonic.llm.config import DEFAULTS
from harmonic.llm.models import MODEL_KINDS
from harmonic.llm.train import FAMILY

FLAGS = ("model", "data_dir", "seed", "max_steps", "device")


def main(argv=None):
    parser = cell_parser(__doc__)
    parser.add_argument("--model", choices=MODEL_KINDS)
    parser.add_argument("--data-dir", help="prepared token bins (python -m harmonic.cli.llm_prepare)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--device", help="auto | cpu | cuda")
    parser.add_argument("--probe", type=Path, help="memory-probe JSON (used when micro_batch is 'auto')")
    args = parser.parse_args(argv)
    params = params_from(args, FLAGS, DEFAULTS["head"])
    # The workflow passes the emissions settings apart from the cell's values; the cell records them with its own.
    params["emissions"] = json.loads(args.emissions_json) or params.get("emissions", {})
    identity = json.loads(args.cell_json) if args.cell_json else None
    inputs = {"probe": args.probe}
    result = cell.run(FAMILY, params, args.out_dir, cell=identity, emissions=params["emissions"], inputs=inputs)
    if cell.is_writer() and result.status != "failed" and not result.hyperparameters.get("keep_checkpoint"):
        (Path(args.out_dir) / CHECKPOINT_NAME).unlink(missing_ok=True)
    return result


if __name__ == "__main__":
    main()
