"""Where chebyshev_smooth's CUDA kernels leave the fp32 reference on edge case 1005 (benchmarks/l1_cuda_check.py's
edge_inputs, the seed whose dW error is 7.3e-4 in l1_cuda_seeds.py): the forward's kept value alpha2 d of every pair
against a float64 reference, the pairs it misses most, and the centres whose dW it misses most.

Run from the repository root on a GPU: PYTHONPATH=. python3 benchmarks/results/l1-cuda-h200-pairs/smooth_seed_1005.py
"""

import json
import math
import sys

import torch

from benchmarks import l1_cuda_check as check
from harmonic.distances import get_distance
from harmonic.kernels import l1_cuda, l1_heads

index = int(sys.argv[1]) if len(sys.argv) > 1 else 1005
ok, reason = l1_cuda.l1_cuda_available()
assert ok, reason
x, w, y = check.edge_inputs(index, torch.bfloat16)
dist = get_distance("chebyshev_smooth")
ops = dist.kernel_operands(x, w, dist.resolve({}), None, False, x.dtype)
alpha = ops.alpha
alpha2 = alpha / math.log(2)
a, b = ops.a.detach().contiguous(), ops.b.detach().contiguous()
aa, bb = ops.aa.detach().float().contiguous(), ops.bb.detach().float().contiguous()
n_exp = math.sqrt(x.shape[1])
ext = l1_cuda._STATUS["module"]
stats = ext.forward(a, b, aa, bb, y.to(torch.int32), l1_heads.SMOOTH, n_exp, 1e-8, 1.0, 1.0, alpha, True)
kept = stats[4][0, :, : w.shape[0]].double()
u = (a.double()[:, None, :] - b.double()[None, :, :]).abs()
ref = torch.logsumexp(alpha * u, dim=-1) / alpha * alpha2
err = (kept - ref).abs()
out = {"alpha": alpha, "max_abs_err_alpha2d": float(err.max()), "median_abs_err": float(err.median())}
top = torch.topk(err.flatten(), 8)
pairs = []
for value, flat in zip(top.values.tolist(), top.indices.tolist()):
    r, c = divmod(flat, w.shape[0])
    pairs.append({"row": r, "centre": c, "err": value, "kept": float(kept[r, c]), "ref": float(ref[r, c]),
                  "row_max": float(aa[r]), "centre_max": float(bb[c]), "tile": [r // 128, c // 128]})
out["worst_pairs"] = pairs
# the gradients, CUDA (sums kept) against the fp32 reference
check.use("cuda-store")
xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
got = check.run_loss("cuda-store", xg, wg, y, "chebyshev_smooth", n_exp)
want = check.run_loss("reference", xg, wg, y, "chebyshev_smooth", n_exp)
dw_err = (got[1][1].float() - want[1][1].float()).norm(dim=1)
out["dW_rel_err"] = float((got[1][1].float() - want[1][1].float()).norm() / want[1][1].float().norm())
top = torch.topk(dw_err, 5)
out["worst_centres"] = [{"centre": c, "err_norm": v, "ref_norm": float(want[1][1][c].float().norm())}
                        for v, c in zip(top.values.tolist(), top.indices.tolist())]
print(json.dumps(out, indent=1))
