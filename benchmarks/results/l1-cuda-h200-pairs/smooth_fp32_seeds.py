"""chebyshev_smooth's edge cases 1000-1015 (benchmarks/l1_cuda_check.py's edge_inputs, bf16 values) held in fp32, so
the kernels' gradients come back in fp32 and are compared with the fp32 reference before any rounding to bf16:
CUDA and Triton, dx and dW relative errors per seed, one JSON line each.

Run from the repository root on a GPU: PYTHONPATH=. python3 benchmarks/results/l1-cuda-h200-pairs/smooth_fp32_seeds.py
"""

import json
import math

import torch

from benchmarks import l1_cuda_check as check

for index in range(1000, 1016):
    x, w, y = check.edge_inputs(index, torch.bfloat16)
    x, w = x.detach().float().requires_grad_(), w.detach().float().requires_grad_()  # the same values, exactly
    n_exp = math.sqrt(x.shape[1])
    want = check.run_loss("reference", x, w, y, "chebyshev_smooth", n_exp)
    row = {"index": index}
    for impl in ("cuda-store", "cuda", "triton"):
        got = check.run_loss(impl, x, w, y, "chebyshev_smooth", n_exp)
        row[impl] = {"loss": check.rel_err(got[0], want[0]), "dx": check.rel_err(got[1][0], want[1][0]),
                     "dW": check.rel_err(got[1][1], want[1][1])}
    print(json.dumps(row), flush=True)
