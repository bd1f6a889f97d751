"""One edge case of benchmarks/l1_cuda_check.py in every mode, with the dW / dx error per centre / row: where a
case's error against the fp32 reference comes from.

    PYTHONPATH=. python benchmarks/l1_cuda_case.py --head chebyshev_smooth --x-grad 0   # on a CUDA machine
"""

from __future__ import annotations

import argparse
import json
import math

import torch
from l1_cuda_check import edge_cases, edge_inputs, run_loss  # noqa: E402 - beside this file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", required=True)
    parser.add_argument("--x-grad", type=int, default=0)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    index = next(i for i, c in enumerate(edge_cases())
                 if c[0] == args.head and c[1] == dtype and c[2] == {} and c[3] == bool(args.x_grad))  # fmt: skip
    results = {}
    for impl in ("reference", "triton", "cuda", "cuda-store", "cuda-unfused"):
        for x_grad in (False, True):
            x, w, y = edge_inputs(index, dtype)
            x.requires_grad_(x_grad)
            loss, grads = run_loss(impl, x, w, y, args.head, math.sqrt(x.shape[1]))
            results[(impl, x_grad)] = [g.float() for g in grads]
    report = {"case": index}
    for (impl, x_grad), grads in results.items():
        if impl == "reference":
            continue
        want = results[("reference", x_grad)]
        # run_loss returns the gradients of the inputs that require them, in order: (dx, dW) or (dW,)
        for name, got, ref in zip(("dx", "dW") if x_grad else ("dW",), grads, want):
            err = (got - ref).norm(dim=1)
            top = torch.topk(err, 3)
            report[f"{impl} x_grad={x_grad} {name}"] = {
                "rel": float((got - ref).norm() / ref.norm()),
                "worst rows": top.indices.tolist(),
                "their error / whole norm": (top.values / ref.norm()).tolist(),
                "their reference norm": ref[top.indices].norm(dim=1).tolist(),
            }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
