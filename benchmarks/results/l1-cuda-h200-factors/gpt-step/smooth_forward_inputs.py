"""Diagnosis: chebyshev_smooth's CUDA forward (sums kept) timed on the benchmark's inputs and on GPT-2-step-like ones,
to tell the input scale from the shape. Run from the repository root: PYTHONPATH=. python3 <this file>
"""

import json

import torch

from benchmarks import l1_cuda_check as check
from harmonic import kernels

check.use("cuda-store")
ok, reason = check.l1_cuda.l1_cuda_available()
assert ok, reason
for n, v, w_std, label in [
    (8192, 50304, 0.5, "benchmark"),
    (16384, 50257, 0.5, "step shape"),
    (16384, 50257, 0.02, "step shape, wte scale"),
    (8192, 50304, 0.02, "wte scale"),
]:
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(n, 768, device="cuda", generator=gen).bfloat16().requires_grad_()
    w = (torch.randn(v, 768, device="cuda", generator=gen) * w_std).bfloat16().requires_grad_()
    y = torch.randint(0, v, (n,), device="cuda", generator=gen)

    def forward(x=x, w=w, y=y):  # the forward only, keeping its sums as a training step does
        kernels.fused_harmonic_loss(x, w, y, distance="chebyshev_smooth", n=27.7, eps=1e-8)

    print(
        json.dumps({"inputs": label, "N": n, "V": v, "w_std": w_std, "forward_ms": check.time_ms(forward, 5)}),
        flush=True,
    )
