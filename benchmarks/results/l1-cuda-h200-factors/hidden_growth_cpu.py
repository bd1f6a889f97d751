"""How fast a language model's hidden states leave chebyshev_smooth's factor-sweep range, on the CPU: GPT-2 124M's
body (gpt_step_benchmark.py's model) with a 1024-token vocabulary (tied centres, so the chebyshev_smooth head runs
through the reference path on the CPU), one batch of 2 x 1024 tokens, AdamW at lr 1e-4 as the GPU step benchmark.
Before each step it prints max |x|, max |w| and the share of 128 x 128 tiles each range rule accepts: `bound` (the
largest |x| plus the largest |w|, the rule of commit 4f2127a) and `offsets` (2 alpha2 min(max |x|, max |w|) + 2 <= 100,
main's smooth_tile_in_range). Run from the repository root (about 2 minutes):
PYTHONPATH=. python3 benchmarks/results/l1-cuda-h200-factors/hidden_growth_cpu.py
"""

import json
import math

import torch

from benchmarks.gpt_step_benchmark import GPT2_124M
from harmonic.llm.models import build_model

ALPHA2, TILE, VOCAB = 10.0 / math.log(2), 128, 1024


def tile_max(v):
    return torch.nn.functional.pad(v.abs().amax(1), (0, -v.shape[0] % TILE)).view(-1, TILE).amax(1)


torch.manual_seed(0)
model = build_model("gpt", GPT2_124M, "chebyshev_smooth", VOCAB)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
tokens = torch.randint(0, VOCAB, (2, 1025), generator=torch.Generator().manual_seed(1))
batch = {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]}
for step in range(9):
    x, y = model.labelled_hidden(batch)
    with torch.no_grad():
        w = model.head.centres
        rows, cols = tile_max(x)[:, None], tile_max(w)[None, :]
        bound = ALPHA2 * (rows + cols) + math.log2(x.shape[1]) <= 125
        offsets = 2 * ALPHA2 * torch.minimum(rows, cols) + 2 <= 100
        row = {"step": step, "max_abs_x": x.abs().max().item(), "max_abs_w": w.abs().max().item(),
               "tiles": bound.numel(), "bound_share": bound.float().mean().item(),
               "offsets_share": offsets.float().mean().item()}  # fmt: skip
    print(json.dumps(row), flush=True)
    model.head.loss(x, y, fused=False).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
