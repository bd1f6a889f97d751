#!/usr/bin/env python
"""Time the toy training engine on this machine: ms per optimizer step and seconds per 7000-epoch cell.

A group of S cells (seeds 0..S-1, modular addition, 800 train rows = 25 steps per epoch, full-split evaluation after
every epoch) is trained for a few epochs after one warm-up epoch (compilation, CUDA graph capture); the time per
step is extrapolated to the paper's 7000 epochs (175,000 steps) per cell, and divided by S for the cost per cell.

    python benchmarks/toy_cell_benchmark.py --model mlp --cells 1 20 --epochs 8 --threads 1
    python benchmarks/toy_cell_benchmark.py --device cuda --cells 65 --compile
"""

import argparse
import json
import platform
import time

import torch

from harmonic.toy.batched import ToyGroup
from harmonic.toy.config import resolve

HEADS = {"baseline": {"distance": "baseline"}, "euclidean": {"distance": "euclidean", "n": 1.0, "eps": 1e-8}}


def measure(model, head, cells, epochs, device, compile):
    # the toy defaults (harmonic/toy/config.py: corrected setting, modular addition, 800 train rows)
    hps = [resolve(dict(model=model, head=HEADS[head], seed=seed, epochs=epochs + 1)) for seed in range(cells)]
    group = ToyGroup(hps, device=device, compile=compile)
    start = time.perf_counter()
    group.advance()  # warm-up epoch: compilation, graph capture
    if device == "cuda":
        torch.cuda.synchronize()
    warm_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(epochs):
        group.advance()
    if device == "cuda":
        torch.cuda.synchronize()
    step_ms = (time.perf_counter() - start) / (epochs * group.max_steps) * 1e3
    cell_s = step_ms * 7000 * group.max_steps / 1e3 / cells
    return dict(
        model=model,
        head=head,
        cells=cells,
        device=device,
        compile=compile,
        epochs_timed=epochs,
        first_epoch_s=round(warm_s, 2),
        ms_per_step=round(step_ms, 3),
        s_per_7000_epoch_cell=round(cell_s, 1),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mlp", choices=["mlp", "transformer"])
    parser.add_argument("--head", default="euclidean", choices=sorted(HEADS))
    parser.add_argument("--cells", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--epochs", type=int, default=8, help="timed epochs after the warm-up epoch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        json.dumps(
            dict(machine=platform.processor() or platform.machine(), threads=args.threads, torch=torch.__version__)
        )
    )
    for cells in args.cells:
        print(json.dumps(measure(args.model, args.head, cells, args.epochs, args.device, args.compile)), flush=True)


if __name__ == "__main__":
    main()
