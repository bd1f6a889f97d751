"""Diagnosis: the GPT-2 step's own head inputs (gpt_step_benchmark.py's model at initialisation and its first batch,
bf16 autocast) through chebyshev_smooth's CUDA forward, timed beside random inputs of the same shape, with the
inputs' ranges against the factor sweep's (|alpha2 v| <= 125). Run from the repository root:
PYTHONPATH=. python3 <this file>
"""

import json
import math

import torch

from benchmarks import l1_cuda_check as check
from benchmarks.gpt_step_benchmark import GPT2_124M, GPT2_VOCAB
from harmonic import kernels
from harmonic.llm.models import build_model

check.use("cuda-store")
torch.manual_seed(0)
model = build_model("gpt", GPT2_124M, "chebyshev_smooth", GPT2_VOCAB).cuda()
gen = torch.Generator(device="cuda").manual_seed(1)
tokens = torch.randint(0, GPT2_VOCAB, (16, 1025), device="cuda", generator=gen)
with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
    x, y = model.labelled_hidden({"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]})
x = x.bfloat16().contiguous().requires_grad_()
w = model.head.centres.detach().bfloat16().contiguous().requires_grad_()
alpha2 = 10.0 / math.log(2)
rand_x = torch.randn_like(x).requires_grad_()
for label, a in (("step inputs", x), ("random x, step centres", rand_x)):

    def forward(a=a):
        kernels.fused_harmonic_loss(a, w, y, distance="chebyshev_smooth", n=model.head.n, eps=1e-8)

    row = {
        "inputs": label,
        "forward_ms": check.time_ms(forward, 3),
        "max_alpha2_abs_x": alpha2 * a.abs().max().item(),
    }
    row["max_alpha2_abs_w"] = alpha2 * w.abs().max().item()
    row["x_stride"], row["x_ptr_mod16"] = list(a.stride()), a.data_ptr() % 16
    print(json.dumps(row), flush=True)
