"""How peaked HarMax is at initialisation for GPT-2's head: n = 1536 on d (Baek et al.'s released code, 768 on d^2)
against n = sqrt(768) (their paper's text), and whether the code's linear-space pow underflows there.

    python benchmarks/llm_exponent_at_init.py      # CPU, a few seconds; quoted in docs/llm.md
"""

import math

import torch
import torch.nn.functional as F

torch.manual_seed(0)
V, D, ROWS = 50304, 768, 64
x = F.layer_norm(torch.randn(ROWS, D), (D,))  # the final LayerNorm's output at init (gain 1)
w = torch.randn(V, D) * 0.02  # nanoGPT's embedding init (the code's is 0.0202)
d = torch.cdist(x, w)
for n in (1536.0, math.sqrt(D)):
    logits = -n * torch.log(d)
    spread = (logits.max(1).values - logits.min(1).values).mean().item()
    print(f"n = {n:7.1f} on d: logits span {spread:.2f} nats, largest p {logits.softmax(1).max(1).values.mean():.2e}")
ratio = d**2 / (d**2).min(1, keepdim=True).values  # model_l2loss.py:164-176 (the / n_embd cancels)
print(
    f"code's (d^2 / min)^-768: smallest {ratio.pow(-768.0).min():.2e}, fraction underflowed to 0: "
    f"{(ratio.pow(-768.0) == 0).float().mean():.0%}; uniform p = {1 / V:.2e}"
)
