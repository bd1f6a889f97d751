"""The command-line programs the workflow's rules call, each runnable by hand: `python -m harmonic.cli.<name> --help`.

    toy_cell, vision_cell   train one cell through the cell contract (harmonic.cell); see cell_parser / run_cell
    llm_cell                the same for a language-model cell (also under torchrun: `torchrun ... -m harmonic.cli.llm_cell`)
    vision_data             prepare (or download) one vision dataset
    llm_prepare, llm_probe  GPT-2 token bins of a corpus; the largest micro-batch that fits this GPU
    aggregate               every cell's metrics.json -> one table per family
    toy_stitch              the toy stitching study of one model (downstream of its partners' cells)
    claims, make_index      the claims table and results/index.html
    fetch_sources           the offline data sources (package-index files, sha256-checked)

The rules take a program's file as an input (rules/common.smk cli_path), so editing it reruns only the jobs using it.
"""

import argparse
import json

from harmonic import cell


def cell_parser(description):
    """The arguments every *_cell program shares (the workflow passes the first four)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", required=True, help="cell directory to write into")
    parser.add_argument("--params-json", help="the cell's parameters as one JSON object (what the workflow passes)")
    parser.add_argument("--cell-json", help="the cell's identity (dataset, model, head, seed) for metrics.json")
    parser.add_argument(
        "--emissions-json", default="{}", help='{"country_iso_code", "measure_power_secs", "enabled"}'
    )
    parser.add_argument("--distance", help="head distance: 'baseline' or a registry name")
    parser.add_argument("--n", type=float, help="harmonic exponent on d")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="any parameter")
    return parser


def params_from(args, keys, default_head):
    """--params-json, then the named flags, --set KEY=JSON and the head flags over it (flags left out change nothing)."""
    params = json.loads(args.params_json) if args.params_json else {}
    params.update({key: getattr(args, key) for key in keys if getattr(args, key) is not None})
    for item in args.set:
        key, _, value = item.partition("=")
        params[key] = json.loads(value)
    if args.distance is not None:
        params["head"] = {"distance": args.distance}
    if args.n is not None:
        params["head"] = {**params.get("head", default_head), "n": args.n}
    return params


def run_cell(family, args, params, inputs=None):
    """harmonic.cell.run with what the command line says; a failed cell still returns (the job exits 0)."""
    identity = json.loads(args.cell_json) if args.cell_json else None
    emissions = json.loads(args.emissions_json)
    return cell.run(family, params, args.out_dir, cell=identity, emissions=emissions, inputs=inputs)
