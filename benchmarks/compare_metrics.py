"""Compare the metrics.json files of two results folders cell by cell and report every key whose value differs.

Why: a refactoring must not change any result. Run the default workflow before and after, then

    python benchmarks/compare_metrics.py /tmp/before/results results --families toy vision

Keys are dotted paths into metrics.json (metrics.test_accuracy, hyperparameters.head.n, ...). By default the keys
that legitimately differ between two runs are ignored (provenance, emissions, wall-clock timings, an error's
traceback); --ignore adds shell-style patterns, --no-default-ignore drops the defaults. Values are compared exactly
unless --rtol is given. Exit status 1 when any cell is missing on one side or any key differs.
"""

import argparse
import fnmatch
import json
import math
import sys
from pathlib import Path

DEFAULT_IGNORE = (
    "provenance.*",
    "emissions.*",
    "error.traceback",
    "metrics.*seconds*",
    "metrics.images_per_second",
)


def flatten(value, prefix=""):
    """{dotted key: leaf value} of a JSON value (lists are leaves: compared whole)."""
    if isinstance(value, dict):
        items = {}
        for key, inner in value.items():
            items.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return items
    return {prefix: value}


def same(a, b, rtol):
    if isinstance(a, float) and isinstance(b, float) and rtol:
        return math.isclose(a, b, rel_tol=rtol) or (math.isnan(a) and math.isnan(b))
    return a == b


def compare_cell(a_path, b_path, ignore, rtol):
    """[(key, value in A, value in B)] for every key that differs and is not ignored."""
    a, b = (flatten(json.loads(Path(p).read_text())) for p in (a_path, b_path))
    keys = sorted(set(a) | set(b))
    missing = object()
    diffs = []
    for key in keys:
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in ignore):
            continue
        va, vb = a.get(key, missing), b.get(key, missing)
        if va is missing or vb is missing or not same(va, vb, rtol):
            diffs.append((key, "<absent>" if va is missing else va, "<absent>" if vb is missing else vb))
    return diffs


def cells(root, families):
    """{cell folder relative to root: metrics.json} for the families asked for."""
    root = Path(root)
    found = {}
    for family in families or [p.name for p in root.iterdir() if p.is_dir()]:
        for path in sorted((root / family).rglob("metrics.json")):
            found[str(path.parent.relative_to(root))] = path
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results_a", help="a results folder (results/<family>/... below it)")
    parser.add_argument("results_b", help="the results folder to compare it with")
    parser.add_argument("--families", nargs="*", help="families to compare (default: every folder in results_a)")
    parser.add_argument("--ignore", nargs="*", default=[], help="more key patterns to ignore, e.g. 'metrics.ev_*'")
    parser.add_argument("--no-default-ignore", action="store_true", help=f"compare {DEFAULT_IGNORE} too")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for floats (default: exact)")
    args = parser.parse_args(argv)
    ignore = [*([] if args.no_default_ignore else DEFAULT_IGNORE), *args.ignore]
    a, b = cells(args.results_a, args.families), cells(args.results_b, args.families)
    problems = 0
    for name in sorted(set(a) ^ set(b)):
        print(f"{name}: only in {args.results_a if name in a else args.results_b}")
        problems += 1
    for name in sorted(set(a) & set(b)):
        for key, va, vb in compare_cell(a[name], b[name], ignore, args.rtol):
            print(f"{name}: {key}: {va!r} != {vb!r}")
            problems += 1
    compared = len(set(a) & set(b))
    print(f"{compared} cells compared (ignoring {', '.join(ignore)}): {problems} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
