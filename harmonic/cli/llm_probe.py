"""Find the largest micro-batch that fits for one (model, head) on this machine's GPU; write it as JSON.

    python -m harmonic.cli.llm_probe --params-json "$(cat params.json)" --out probe.json [--gpus 2]

The cell then uses it with the matching gradient accumulation, so the tokens per step stay as configured. On a
CPU-only machine the configured micro-batch is written back unchanged.
"""

import argparse
import json
from pathlib import Path

from harmonic.llm.probe import probe_micro_batch
from harmonic.runs import atomic_write_json


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params-json", required=True, help="the cell's resolved hyperparameters (JSON)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--gpus", type=int, default=1, help="processes the cell will run (tokens split over them)")
    args = parser.parse_args(argv)
    result = probe_micro_batch(json.loads(args.params_json), world_size=max(1, args.gpus))
    result["gpus"] = args.gpus
    atomic_write_json(args.out, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
