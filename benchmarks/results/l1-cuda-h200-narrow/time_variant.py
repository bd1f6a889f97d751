"""One build of the CUDA L1 kernels (as variants.sh edited them): every fused kind's forward + backward at the GPT-2
shape with its values kept (HARMONIC_L1_CUDA_STORE), its grad_xw_kernel time, and its errors against the fp32
reference at 64 rows x the vocabulary over three input seeds; manhattan (recomputed) in the same process, the
ratio's denominator in docs/performance.md. One JSON line per head.

Run from the repository root: PYTHONPATH=. python3 benchmarks/results/l1-cuda-h200-narrow/time_variant.py <name>
[head ...] (default: every fused head)
"""

import json
import statistics
import sys

from benchmarks import l1_cuda_check as check

name = sys.argv[1]
ok, reason = check.l1_cuda.l1_cuda_available()
assert ok, reason
n, d, v = check.GPT2
x, w, y = check.make_inputs(n, d, v, seed=3)
manhattan_ms = check.time_ms(check.fwd_bwd("cuda", "manhattan", x, w, y), 7)
print(json.dumps({"variant": name, "head": "manhattan", "ms": manhattan_ms}), flush=True)
for head in sys.argv[2:] or check.FUSED_HEADS:
    row = {"variant": name, "head": head}
    row["ms"] = check.time_ms(check.fwd_bwd("cuda-store", head, x, w, y), 7)
    row["x_manhattan"] = row["ms"] / manhattan_ms
    row["kernels"] = {k: t for k, t in check.kernel_times(head, x, w, y, "cuda-store").items() if k in check.MIN_INSTR}
    for seed in range(1, 4):
        xs, ws, ys = check.make_inputs(check.CHECK_ROWS, d, v, seed=seed)
        errors = check.compare("cuda-store", "reference", xs, ws, ys, head)
        for key in ("loss_rel_err", "dx_rel_err", "dW_rel_err"):
            row.setdefault(key, []).append(errors[key])
    for key in ("loss_rel_err", "dx_rel_err", "dW_rel_err"):
        row[key + "_max"] = max(row[key])
    print(json.dumps(row), flush=True)
