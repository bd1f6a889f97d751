r"""Evaluate the papers' claims (harmonic/claims.yaml) over results tables and write results/claims.{csv,html}.

This run's tables are labelled with --scale (embedded for config.yaml, paper for presets/paper.yaml); --evidence adds
tables made elsewhere (e.g. the committed H200 toy grid) under their own scale label, so one claims table shows both.

    python -m harmonic.cli.claims --scale embedded --tables results/tables/toy.parquet \
        --evidence "paper (H200 grid)=benchmarks/results/toy-grid-h200/toy.parquet" \
        --csv results/claims.csv --html results/claims.html
"""

import argparse
import shlex
import sys
from pathlib import Path

from harmonic import claims
from harmonic.report import claims_markdown, claims_page
from harmonic.runs import atomic_output, atomic_write_text


def parse_evidence(items):
    """'scale label=path' pairs; a missing file is an error, not a silently shorter table."""
    out = []
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"--evidence {item!r}: expected 'scale label=path/to/table.parquet'")
        if not Path(path).exists():
            raise SystemExit(f"--evidence {item!r}: {path} does not exist")
        out.append((label, path))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", required=True, help="label of this run's tables, e.g. embedded or paper")
    parser.add_argument("--tables", nargs="*", default=[], type=Path, help="this run's family tables")
    parser.add_argument("--evidence", nargs="*", default=[], help="'scale label=table' from runs made elsewhere")
    parser.add_argument("--claims-file", type=Path, default=None, help="default: harmonic/claims.yaml")
    parser.add_argument("--csv", required=True, type=Path)
    parser.add_argument("--html", required=True, type=Path)
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown (for docs/)")
    args = parser.parse_args(argv)

    studies, claim_list = claims.load(args.claims_file)
    tables = [(args.scale, str(path), claims.read_table(path)) for path in args.tables]
    tables += [(label, path, claims.read_table(path)) for label, path in parse_evidence(args.evidence)]
    scales = [args.scale] + [label for label, _ in parse_evidence(args.evidence)]
    result = claims.evaluate(claim_list, tables, scales=scales)
    with atomic_output(args.csv) as tmp:
        result.to_csv(tmp, index=False)
    atomic_write_text(args.html, claims_page(result, studies))
    if args.markdown:
        command = shlex.join(["python", "-m", "harmonic.cli.claims", *(argv if argv is not None else sys.argv[1:])])
        atomic_write_text(args.markdown, claims_markdown(result, command))
    counts = result["verdict"].value_counts().to_dict()
    print(f"{len(claim_list)} claims, {len(result)} rows -> {args.csv}, {args.html}; verdicts {counts}")


if __name__ == "__main__":
    main()
