"""Share of 128 x 128 tiles inside chebyshev_smooth's factor-sweep range (alpha = 10), on the CPU, under two rules:
`bound`, alpha2 (max |x| of the tile's rows + max |w| of its centres) + log2 D <= 125 (commit 4f2127a), and
`offsets`, 2 alpha2 min(max |x|, max |w|) + 2 <= 100 for every pair (main's smooth_tile_in_range, l1_kernels.cuh):
for draws of the GPT-2-shape benchmark's distributions (x ~ N(0, 1), w ~ N(0, 0.25), bf16; the device's generator
draws other values) and for gpt_step_benchmark.py's model at initialisation on its first batch. Prints one JSON
line each. Run from the repository root: PYTHONPATH=. python3 benchmarks/results/l1-cuda-h200-factors/factor_range.py
"""

import json
import math

import torch

from benchmarks.gpt_step_benchmark import GPT2_124M, GPT2_VOCAB
from harmonic.llm.models import build_model

ALPHA2, TILE = 10.0 / math.log(2), 128


def tiles_in_range(x, w):
    d = x.shape[1]
    row_max = torch.nn.functional.pad(x.abs().amax(1), (0, -x.shape[0] % TILE)).view(-1, TILE).amax(1)
    col_max = torch.nn.functional.pad(w.abs().amax(1), (0, -w.shape[0] % TILE)).view(-1, TILE).amax(1)
    rows, cols = row_max[:, None], col_max[None, :]
    bound = ALPHA2 * (rows + cols) <= 125 - math.log2(d)
    offsets = 2 * ALPHA2 * torch.minimum(rows, cols) + 2 <= 100
    return {"tiles": bound.numel(), "bound_in_range": int(bound.sum()), "offsets_in_range": int(offsets.sum())}


gen = torch.Generator().manual_seed(3)
for seed in range(3):
    x = torch.randn(8192, 768, generator=gen).bfloat16().float()
    w = (torch.randn(50304, 768, generator=gen) * 0.5).bfloat16().float()
    print(json.dumps({"inputs": f"benchmark distributions, draw {seed}", **tiles_in_range(x, w)}), flush=True)
torch.manual_seed(0)
model = build_model("gpt", GPT2_124M, "chebyshev_smooth", GPT2_VOCAB)
tokens = torch.randint(0, GPT2_VOCAB, (16, 1025), generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    x, _ = model.labelled_hidden({"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]})
w = model.head.centres.detach()
print(
    json.dumps(
        {"inputs": "GPT-2 step model at initialisation", **tiles_in_range(x.bfloat16().float(), w.bfloat16().float())}
    )
)
