#!/usr/bin/env python
"""Write results/index.html: links to every rendered notebook, every figure and every table (relative links, no CDN).

    python workflow_scripts/make_index.py --out results/index.html --html results/notebooks/*.html \
        --figures results/figures/* --tables results/tables/*.csv
"""

import argparse
import datetime
import html
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from harmonic.runs import atomic_write_text  # noqa: E402


def link(target, out_dir, text=None):
    href = os.path.relpath(target, out_dir)
    return f'<a href="{html.escape(href)}">{html.escape(text or Path(target).name)}</a>'


def build_page(out, notebooks, figure_dirs, tables):
    out_dir = Path(out).parent
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>harmonic-repro results</title>',
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "img{max-width:18em;border:1px solid #ccc;margin:.3em}figure{display:inline-block}</style></head><body>",
        "<h1>harmonic-repro results</h1>",
        f"<p>Generated {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}.</p>",
        "<h2>Notebooks</h2><ul>",
    ]
    parts += [f"<li>{link(path, out_dir, Path(path).stem)}</li>" for path in sorted(notebooks)]
    parts.append("</ul><h2>Tables</h2><ul>")
    parts += [f"<li>{link(path, out_dir)}</li>" for path in sorted(tables)]
    parts.append("</ul><h2>Figures</h2>")
    for directory in sorted(figure_dirs):
        images = sorted(Path(directory).glob("*.png"))
        parts.append(f"<h3>{html.escape(Path(directory).name)}</h3>")
        if not images:
            parts.append("<p>(no figure: see the notebook for why)</p>")
        for image in images:
            href = html.escape(os.path.relpath(image, out_dir))
            parts.append(
                f'<figure><a href="{href}"><img src="{href}" alt="{html.escape(image.stem)}"></a>'
                f"<figcaption>{html.escape(image.stem)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--html", nargs="*", default=[], help="rendered notebooks")
    parser.add_argument("--figures", nargs="*", default=[], help="figure directories (their *.png are linked)")
    parser.add_argument("--tables", nargs="*", default=[], help="table files")
    args = parser.parse_args(argv)
    atomic_write_text(args.out, build_page(args.out, args.html, args.figures, args.tables))
    print(f"wrote {args.out}: {len(args.html)} notebooks, {len(args.figures)} figure directories")


if __name__ == "__main__":
    main()
