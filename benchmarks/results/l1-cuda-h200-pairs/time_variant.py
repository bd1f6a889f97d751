"""One build of the CUDA L1 kernels (as variants.sh edited them): canberra's and manhattan's forward + backward at
the GPT-2 shape (sums kept for canberra, recomputed for manhattan: the ratio docs/performance.md quotes), canberra's
per-kernel times, and canberra's errors against the fp32 reference at 64 rows x the vocabulary over several input
seeds (CUDA and Triton), printed as one JSON line.

Run from the repository root: PYTHONPATH=. python3 benchmarks/results/l1-cuda-h200-pairs/time_variant.py <name>
"""

import json
import statistics
import sys

from benchmarks import l1_cuda_check as check

name = sys.argv[1]
ok, reason = check.l1_cuda.l1_cuda_available()
assert ok, reason
x, w, y = check.make_inputs(*check.GPT2, seed=3)
row = {"variant": name}
row["canberra_ms"] = check.time_ms(check.fwd_bwd("cuda-store", "canberra", x, w, y), 7)
row["manhattan_ms"] = check.time_ms(check.fwd_bwd("cuda", "manhattan", x, w, y), 7)
row["ratio"] = row["canberra_ms"] / row["manhattan_ms"]
row["kernels"] = {k: v for k, v in check.kernel_times("canberra", x, w, y, "cuda-store").items() if k in check.MIN_INSTR}
n, d, v = check.GPT2
errors = {"cuda-store": [], "triton": []}
for seed in range(1, 7):
    x, w, y = check.make_inputs(check.CHECK_ROWS, d, v, seed=seed)
    for impl in errors:
        errors[impl].append(check.compare(impl, "reference", x, w, y, "canberra"))
for impl, rows in errors.items():
    for key in ("loss_rel_err", "dx_rel_err", "dW_rel_err"):
        values = [r[key] for r in rows]
        row[f"{impl} {key}"] = {"values": values, "median": statistics.median(values), "max": max(values)}
print(json.dumps(row), flush=True)
