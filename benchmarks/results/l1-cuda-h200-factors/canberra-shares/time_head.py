"""One head's CUDA forward + backward (sums kept, fused) at the GPT-2 shape, per-kernel times, and its errors at 64
rows x the vocabulary against the fp32 reference, printed as one JSON line: shares.sh runs it once per build.

Run from the repository root: PYTHONPATH=. python3 benchmarks/results/l1-cuda-h200-factors/canberra-shares/time_head.py canberra
"""

import json
import sys

from benchmarks import l1_cuda_check as check

head = sys.argv[1]
ok, reason = check.l1_cuda.l1_cuda_available()
assert ok, reason
x, w, y = check.make_inputs(*check.GPT2, seed=3)
row = {"head": head, "ms": check.time_ms(check.fwd_bwd("cuda-store", head, x, w, y), 5)}
row["manhattan_ms"] = check.time_ms(check.fwd_bwd("cuda", "manhattan", x, w, y), 5)
row["kernels"] = {k: v for k, v in check.kernel_times(head, x, w, y, "cuda-store").items() if k in check.MIN_INSTR}
n, d, v = check.GPT2
x, w, y = check.make_inputs(check.CHECK_ROWS, d, v, seed=1)
row["errors"] = check.compare("cuda-store", "reference", x, w, y, head)
print(json.dumps(row), flush=True)
