r"""Write results/index.html: the claims table first, then each study's figures beside the paper's numbers, then
links to every rendered notebook and table (relative links, no CDN).

    python -m harmonic.cli.make_index --out results/index.html --claims-csv results/claims.csv \
        --claims-html results/claims.html --html results/notebooks/*.html --figures results/figures/* \
        --tables results/tables/*.csv
"""

import argparse
from pathlib import Path

import pandas as pd

from harmonic import claims
from harmonic.report import index_page
from harmonic.runs import atomic_write_text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--claims-csv", type=Path, help="results/claims.csv (harmonic.cli.claims)")
    parser.add_argument("--claims-html", type=Path, help="results/claims.html, linked from the index")
    parser.add_argument("--html", nargs="*", default=[], help="rendered notebooks")
    parser.add_argument("--figures", nargs="*", default=[], help="figure directories (their *.png are shown)")
    parser.add_argument("--tables", nargs="*", default=[], help="table files")
    args = parser.parse_args(argv)
    studies, claim_list = claims.load()
    result = pd.read_csv(args.claims_csv) if args.claims_csv else None
    page = index_page(args.out, result, studies, claim_list, args.html, args.figures, args.tables, args.claims_html)
    atomic_write_text(args.out, page)
    print(f"wrote {args.out}: {len(args.html)} notebooks, {len(args.figures)} figure directories")


if __name__ == "__main__":
    main()
