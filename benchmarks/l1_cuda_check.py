"""Device check of the CUDA C++ L1 kernels (harmonic/kernels/l1_cuda): build, correctness, speed, in one process.

    OUT=<dir> bash benchmarks/l1_cuda_check.sh          # on one H100/H200, from the repository root (~5-6 min)

Every L1-type head of HEADS (all seven kernel kinds: manhattan, hamming_soft, bray_curtis_abs, bray_curtis,
chebyshev, chebyshev_smooth, canberra, minkowski p = 3 and p = 1.5).

Stages (each one's failure is recorded in the JSON and the next one still runs; results are rewritten after each):
1. build: the extension, timed, with nvcc's -Xptxas -v register / spill report (build.log, parsed into the JSON).
2. check: loss and gradients against the fp32 reference (harmonic.pairwise -> -n log(d + eps) -> cross-entropy)
   at 64 rows x the GPT-2 vocabulary (the issue's bar: loss 1e-7, gradients 2e-4 relative), next to the Triton
   kernels' errors; then edge cases at small odd shapes (partial tiles, D not a multiple of 8, a point on a centre,
   ignored rows, label smoothing, sum / none reductions, fp32 / fp16 inputs, centres-only gradient); 16-bit
   gradients are judged net of their own rounding against the reference run in fp32 (rel_err_beyond_rounding).
3. agree: CUDA against Triton at the GPT-2 shape (N=8192, D=768, V=50304, bf16).
4. bench: forward+backward ms (median of CUDA-event-timed repeats) of CE eager, the Triton and the CUDA kernels per
   head (each CUDA mode it has: sums recomputed, kept, dx and dW unfused), CUDA forward and backward separately,
   per-kernel times from torch.profiler, and each kernel's time as "instructions per triple at full issue"
   (ms x SMs x 128 lanes x clock / (N V D)) against its own minimum.
5. ncu (time-boxed): executed instructions per (row, centre, feature) triple of the forward and fused backward
   kernels of the special-function heads (NCU_HEADS, sums kept) at N=1024, V=8192, issue-slot and pipe use (xu: the
   special-function unit) and the stall reasons.
6. gpt_step (time-boxed): benchmarks/gpt_step_benchmark.py, baseline and manhattan heads, tokens/s ratio, in the
   faster backward mode, then the other one (gpt_step_other) when time is left.
Writes $OUT/l1_cuda_check.json and $OUT/l1_cuda_check.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]

from harmonic import kernels  # noqa: E402
from harmonic.kernels import l1_cuda  # noqa: E402

GPT2 = (8192, 768, 50304)  # N, D, V
# head label -> (registry distance, its parameters): every L1-type kind of harmonic/kernels/l1_heads.py
HEADS = {
    "manhattan": ("manhattan", {}),
    "hamming_soft": ("hamming_soft", {}),
    "bray_curtis_abs": ("bray_curtis_abs", {}),
    "bray_curtis": ("bray_curtis", {}),
    "chebyshev": ("chebyshev", {}),
    "chebyshev_smooth": ("chebyshev_smooth", {}),
    "canberra": ("canberra", {}),
    "minkowski_p3": ("minkowski", {"p": 3.0}),
    "minkowski_p1.5": ("minkowski", {"p": 1.5}),
}
STORE_HEADS = tuple(HEADS)  # every kind keeps its values per pair (bray_curtis: both of its sums)
SIGN_HEADS = ("manhattan", "hamming_soft", "bray_curtis_abs", "bray_curtis")  # their own grad_x / grad_w
FUSED_HEADS = tuple(h for h in HEADS if h not in SIGN_HEADS)  # one backward sweep for dx and dW (or two: unfused)
CHECK_ROWS = 64
BAR_LOSS, BAR_GRAD = 1e-7, 2e-4  # the errors against the fp32 reference
EDGE_LOSS, EDGE_GRAD = 1e-5, 1e-4  # tests/kernels' tolerances at small shapes
MIN_INSTR = {"forward_kernel": 2, "coeff_kernel": 2, "grad_x_kernel": 2, "grad_w_kernel": 2, "grad_xw_kernel": 3}
NCU_SHAPE = (1024, 768, 8192)
START = time.perf_counter()
OUT_DIR = [Path(".")]  # set by main


def elapsed() -> float:
    return time.perf_counter() - START


def rel_err(got, want) -> float:
    return float((got.float() - want.float()).norm() / want.float().norm().clamp_min(1e-30))


def rel_err_beyond_rounding(got, want32) -> float:
    """Relative error of a 16-bit gradient `got` against the unrounded fp32 reference `want32`, net of got's own
    rounding: per element |got - want32| less half an ulp of got's format at got (none where got is 0), clamped at 0.
    A kernel whose fp32 result lies within e of want32 scores at most e, wherever its rounding to 16 bits falls (one
    bf16 ulp on one element of a 77 x 100 gradient is already ~1e-4 of its norm); fp32 `got`: plain rel_err."""
    g, want32 = got.float(), want32.float()
    bits = {torch.bfloat16: 8, torch.float16: 11}.get(got.dtype)  # significant bits of the format
    if bits is None:
        return rel_err(g, want32)
    _, exponent = torch.frexp(g)  # |g| = m 2^exponent, m in [0.5, 1): ulp = 2^(exponent - bits)
    half_ulp = torch.where(g == 0, torch.zeros_like(g), torch.ldexp(torch.ones_like(g), exponent - bits - 1))
    excess = ((g - want32).abs() - half_ulp).clamp_min(0.0)
    return float(excess.norm() / want32.norm().clamp_min(1e-30))


def make_inputs(n, d, v, seed, dtype=torch.bfloat16):
    """As benchmarks/heads_benchmark.py: x ~ N(0, 1), w ~ N(0, 0.25), every 97th target ignored."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(n, d, device="cuda", generator=gen).to(dtype).requires_grad_()
    w = (torch.randn(v, d, device="cuda", generator=gen) * 0.5).to(dtype).requires_grad_()
    y = torch.randint(0, v, (n,), device="cuda", generator=gen)
    y[::97] = -100
    return x, w, y


def use(impl):
    """Select the fused implementation: cuda (sums recomputed in the backward), cuda-store (kept), cuda-unfused
    (recomputed, dx and dW in two sweeps: the kernels before the fused backward), triton."""
    os.environ["HARMONIC_L1_CUDA"] = "1" if impl.startswith("cuda") else "0"
    os.environ["HARMONIC_L1_CUDA_STORE"] = "1" if impl == "cuda-store" else "0"
    os.environ["HARMONIC_L1_CUDA_FUSED"] = "0" if impl == "cuda-unfused" else "1"


def cuda_impls(head):
    """The CUDA modes a head has: recomputed, kept (STORE_HEADS) and unfused (FUSED_HEADS)."""
    return (
        ("cuda",)
        + (("cuda-store",) if head in STORE_HEADS else ())
        + (("cuda-unfused",) if head in FUSED_HEADS else ())
    )


def run_loss(impl, x, w, y, head, n_exp, **kwargs):
    """(loss, grads of the inputs that require them) of a HEADS entry through impl: cuda, cuda-store, triton or
    reference."""
    distance, params = HEADS[head]
    if impl == "reference":
        fn = kernels.reference_harmonic_loss
    else:
        use(impl)
        fn = kernels.fused_harmonic_loss
    loss = fn(x, w, y, distance=distance, n=n_exp, eps=1e-8, params=dict(params), **kwargs)
    inputs = [t for t in (x, w) if t.requires_grad]
    grads = torch.autograd.grad(loss.sum(), inputs)
    return loss.detach(), grads


def compare(impl, ref, x, w, y, distance, beyond_rounding=False, **kwargs):
    """Errors of impl against ref (another impl name) on the same inputs. beyond_rounding (16-bit inputs, ref the
    reference): also each gradient's error beyond its own rounding (rel_err_beyond_rounding,
    "<name>_excess_rel_err") against the reference run again on the same values held in fp32."""
    n_exp = math.sqrt(x.shape[1])
    got = run_loss(impl, x, w, y, distance, n_exp, **kwargs)
    want = run_loss(ref, x, w, y, distance, n_exp, **kwargs)
    row = {"loss_rel_err": rel_err(got[0], want[0]), "finite": bool(torch.isfinite(got[0]).all())}
    names = [name for name, t in (("dx", x), ("dW", w)) if t.requires_grad]
    for name, g_got, g_want in zip(names, got[1], want[1]):
        row[f"{name}_rel_err"] = rel_err(g_got, g_want)
        row["finite"] = row["finite"] and bool(torch.isfinite(g_got).all())
    if beyond_rounding and ref == "reference" and x.dtype != torch.float32 and names:
        x32, w32 = (t.detach().float().requires_grad_(t.requires_grad) for t in (x, w))
        want32 = run_loss(ref, x32, w32, y, distance, n_exp, **kwargs)
        for name, g_got, g_want in zip(names, got[1], want32[1]):
            row[f"{name}_excess_rel_err"] = rel_err_beyond_rounding(g_got, g_want)
    return row


class Report:
    """The JSON report, rewritten after every stage (a time limit still leaves what was done)."""

    def __init__(self, out: Path):
        self.out = out
        self.data = {"stages": {}, "errors": {}}

    def stage(self, name, fn):
        print(f"== {name} ({elapsed():.0f} s)", flush=True)
        try:
            self.data["stages"][name] = fn()
        except Exception as error:  # noqa: BLE001 - record and go on to the next stage
            self.data["errors"][name] = f"{type(error).__name__}: {error}\n{traceback.format_exc()[-3000:]}"
            print(self.data["errors"][name], flush=True)
        self.data["elapsed_s"] = elapsed()
        self.save()

    def save(self):
        (self.out / "l1_cuda_check.json").write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        (self.out / "l1_cuda_check.md").write_text(markdown(self.data))


def stage_info():
    props = torch.cuda.get_device_properties(0)
    clock_khz = getattr(props, "clock_rate", None)
    if not clock_khz:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=30)  # fmt: skip
            clock_khz = float(out.stdout.split()[0]) * 1e3
        except Exception:  # noqa: BLE001
            clock_khz = 1.98e6  # H100 / H200 SXM boost
    nvcc = shutil.which("nvcc")
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout if nvcc else None
    import triton

    return {
        "gpu": torch.cuda.get_device_name(0),
        "sms": props.multi_processor_count,
        "clock_hz": float(clock_khz) * 1e3,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "nvcc": version.strip().splitlines()[-1] if version else None,
        "git": git_head(),
    }


def git_head():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    except OSError:
        return None


def stage_build(out: Path):
    """Build with -Xptxas -v into a fresh folder, nvcc's output captured (file descriptors 1 and 2) in build.log."""
    os.environ["HARMONIC_L1_CUDA_VERBOSE"] = "1"
    os.environ.setdefault("HARMONIC_L1_CUDA_BUILD", "/tmp/harmonic_l1_cuda_build")
    shutil.rmtree(os.environ["HARMONIC_L1_CUDA_BUILD"], ignore_errors=True)
    log = out / "build.log"
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    start = time.perf_counter()
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        ok, reason = l1_cuda.l1_cuda_available()
    finally:
        sys.stdout.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(fd)
    seconds = time.perf_counter() - start
    text = log.read_text(errors="replace")
    kernels_found = {}
    for match in re.finditer(r"Compiling entry function '(\S+)'(.*?)Used (\d+) registers", text, re.S):
        short = re.search(
            r"(forward_kernel|coeff_kernel|grad_xw_kernel|grad_x_kernel|grad_w_kernel)I(\w+?)EEEv", match.group(1)
        )
        name = f"{short.group(1)}<{short.group(2)}>" if short else match.group(1)[:80]
        spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", match.group(2))
        kernels_found[name] = {"registers": int(match.group(3)), "spill_store_load_bytes": spills}
    if not ok:
        print(f"BUILD FAILED: {reason}", flush=True)
    return {"ok": ok, "reason": reason, "seconds": seconds, "ptxas": kernels_found}


def stage_check_vocab():
    """64 rows x the full GPT-2 vocabulary, bf16: CUDA and Triton against the fp32 reference."""
    n, d, v = GPT2
    rows = []
    for head in HEADS:
        x, w, y = make_inputs(CHECK_ROWS, d, v, seed=1)
        for impl in (*cuda_impls(head), "triton"):
            row = {"head": head, "impl": impl, **compare(impl, "reference", x, w, y, head)}
            row["meets_bar"] = (
                row["loss_rel_err"] <= BAR_LOSS and max(row["dx_rel_err"], row["dW_rel_err"]) <= BAR_GRAD
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def edge_inputs(index, dtype, rows=77):
    """The inputs of edge case `index`: D = 100 (no 16-byte loads), ties, zero rows, an ignored row."""
    x, w, y = make_inputs(rows, 100, 300, seed=10 + index, dtype=dtype)
    with torch.no_grad():
        w[5] = x[3]  # a point on a centre: all features tie (sign(0) = 0)
        w[7, :50] = x[4, :50]  # half the features tie
        w[9].zero_()
        x[6].zero_()  # zero rows: the 0/0 denominators (bray_curtis_abs, canberra)
        w[11] = -x[8]  # bray_curtis: sum |x + w| = 0
        x[10, :3], w[12, :3], x[10, 3:], w[12, 3:] = 1.0, -1.0, 0.0, 0.0  # chebyshev: three tied maxima
    y[3], y[10] = 5, 12
    return x, w, y


def edge_case(index, head, dtype, kwargs, x_grad, rows=77, impl="cuda"):
    """One small case against the reference (edge_inputs)."""
    x, w, y = edge_inputs(index, dtype, rows)
    x.requires_grad_(x_grad)
    row = {"head": head, "impl": impl, "dtype": str(dtype), **kwargs, "x_grad": x_grad, "rows": rows}
    row.update(compare(impl, "reference", x, w, y, head, beyond_rounding=True, **kwargs))
    triton = compare("triton", "reference", x, w, y, head, beyond_rounding=True, **kwargs)
    row.update({f"triton_{k}": value for k, value in triton.items()})
    # "no worse than today's": near-tie pairs have dLoss/dd up to n / eps, so fp32 summation order alone moves the
    # gradients by ~1e-4 between the reference and either kernel family; 16-bit gradients are judged net of their
    # own rounding (a single element rounding to the other neighbour is ~1e-4 of the norm at this size)
    grads = [name for name in ("dx", "dW") if f"{name}_rel_err" in row]
    keys = [f"{name}_excess_rel_err" if f"{name}_excess_rel_err" in row else f"{name}_rel_err" for name in grads]
    grads_ok = all(row[k] <= max(EDGE_GRAD, 2 * row[f"triton_{k}"]) for k in keys)
    row["pass"] = row["finite"] and row["loss_rel_err"] <= max(EDGE_LOSS, 2 * row["triton_loss_rel_err"]) and grads_ok
    return row


def edge_cases():
    """The (head, dtype, loss kwargs, x_grad[, rows, impl]) cases of stage_check_edges; a case's index seeds its
    inputs (edge_inputs)."""
    cases = []
    for head in HEADS:
        for dtype in (torch.bfloat16, torch.float32, torch.float16) if head in SIGN_HEADS else (torch.bfloat16,):
            cases.append((head, dtype, {"label_smoothing": 0.1}, True))
        cases.append((head, torch.bfloat16, {"reduction": "sum"}, True))
        cases.append((head, torch.float32, {"reduction": "none"}, True))
        cases.append((head, torch.bfloat16, {}, False))  # centres-only gradient
        if head in STORE_HEADS:
            cases.append((head, torch.bfloat16, {"label_smoothing": 0.1}, True, 77, "cuda-store"))
        if head in FUSED_HEADS:
            cases.append((head, torch.float32, {"label_smoothing": 0.1}, True, 77, "cuda-unfused"))
    return cases


def stage_check_edges():
    """Small odd shapes (partial tiles), ties, ignored rows, smoothing, reductions, dtypes, several row chunks."""
    rows = []
    for index, case in enumerate(edge_cases()):
        try:
            rows.append(edge_case(index, *case))
        except Exception as error:  # noqa: BLE001
            rows.append({"case": str(case), "pass": False, "error": f"{type(error).__name__}: {error}"[:400]})
        print(json.dumps(rows[-1]), flush=True)
    os.environ["HARMONIC_L1_CUDA_G_BYTES"] = "1"  # 128-row chunks: 300 rows in three
    try:
        for head, dtype, impl in (("manhattan", torch.bfloat16, "cuda"), ("bray_curtis_abs", torch.float32, "cuda"),
                                  ("hamming_soft", torch.bfloat16, "cuda-store"), ("bray_curtis", torch.bfloat16, "cuda"),
                                  ("chebyshev", torch.float32, "cuda"), ("chebyshev_smooth", torch.bfloat16, "cuda"),
                                  ("canberra", torch.bfloat16, "cuda-store"), ("minkowski_p1.5", torch.float32, "cuda")):  # fmt: skip
            rows.append(edge_case(len(rows), head, dtype, {}, True, 300, impl))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        del os.environ["HARMONIC_L1_CUDA_G_BYTES"]
    return {"all_pass": all(r["pass"] for r in rows), "cases": rows}


def stage_edges_isolated(budget_s):
    """The edge cases in a child process first: a kernel fault there (an illegal address poisons the CUDA context)
    leaves this process able to time CE and Triton; on a fault the child runs again under compute-sanitizer."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--edges-only"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget_s, cwd=REPO)
    found = [line[len("EDGES_JSON ") :] for line in proc.stdout.splitlines() if line.startswith("EDGES_JSON ")]
    if proc.returncode == 0 and found:
        return {"ok": True, **json.loads(found[-1])}
    result = {"ok": False, "returncode": proc.returncode, "stdout_tail": proc.stdout[-3000:],
              "stderr_tail": proc.stderr[-3000:]}  # fmt: skip
    sanitizer = shutil.which("compute-sanitizer")
    if sanitizer:
        try:
            run = subprocess.run([sanitizer, "--tool", "memcheck", "--print-limit", "20", *cmd], capture_output=True,
                                 text=True, timeout=min(120.0, budget_s), cwd=REPO)  # fmt: skip
            result["memcheck_tail"] = (run.stdout + run.stderr)[-6000:]
        except subprocess.TimeoutExpired as error:
            result["memcheck_tail"] = f"timed out; partial: {str(error.stdout)[-4000:]}"
    print(json.dumps(result)[:4000], flush=True)
    return result


def stage_agree():
    """CUDA against Triton at the GPT-2 shape (no reference there: it would need the N x V x D broadcast)."""
    n, d, v = GPT2
    rows = []
    for head, impl in [(head, "cuda") for head in HEADS] + [(head, "cuda-store") for head in STORE_HEADS]:
        x, w, y = make_inputs(n, d, v, seed=2)
        row = {"head": head, "impl": impl, **compare(impl, "triton", x, w, y, head)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        del x, w, y
        torch.cuda.empty_cache()
    return rows


def time_ms(fn, reps, warmup=1):
    """Median CUDA-event time of fn() over reps, after warmup calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def fwd_bwd(impl, head, x, w, y):
    n_exp = math.sqrt(x.shape[1])
    distance, params = HEADS.get(head, (None, {}))

    def step():
        x.grad = w.grad = None
        if impl == "ce":
            F.cross_entropy(x @ w.t(), y, ignore_index=-100).backward()
        else:
            use(impl)
            loss = kernels.fused_harmonic_loss(x, w, y, distance=distance, n=n_exp, eps=1e-8, params=dict(params))
            loss.backward()

    return step


def kernel_times(head, x, w, y, impl="cuda"):
    """Per-kernel GPU ms of one CUDA forward+backward (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    step = fwd_bwd(impl, head, x, w, y)
    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    times = {}
    for event in prof.key_averages():
        total = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0)
        key = next((k for k in MIN_INSTR if k in event.key), None)
        if key:
            times[key] = times.get(key, 0.0) + total / 1e3
        elif total > 0:
            times.setdefault("other", {})[event.key[:60]] = total / 1e3
    return times


def stage_bench(info, built):
    n, d, v = GPT2
    per_ms = info["sms"] * 128 * info["clock_hz"] / 1e3  # lane instructions per ms
    triples = n * v * d
    x, w, y = make_inputs(n, d, v, seed=3)
    result = {"N": n, "D": d, "V": v, "bound_ms_per_instr_per_triple": triples / per_ms, "rows": []}
    result["rows"].append({"head": "ce", "impl": "ce eager", "ms": time_ms(fwd_bwd("ce", None, x, w, y), 20, 3)})
    for head in HEADS:
        for impl in (*cuda_impls(head), "triton"):
            reps = 2 if impl == "triton" else (10 if head in SIGN_HEADS else 5)
            try:
                ms = time_ms(fwd_bwd(impl, head, x, w, y), reps)
                row = {"head": head, "impl": impl, "ms": ms, "vs_ce": ms / result["rows"][0]["ms"]}
                # the time as instructions per triple at full issue, and against the 6-instruction bound
                row["instr_per_triple_at_full_issue"] = ms / result["bound_ms_per_instr_per_triple"]
                row["vs_60ms_bound"] = ms / (6 * result["bound_ms_per_instr_per_triple"])
            except Exception as error:  # noqa: BLE001
                row = {"head": head, "impl": impl, "error": f"{type(error).__name__}: {error}"[:300]}
            result["rows"].append(row)
            print(json.dumps(row), flush=True)
    if not built:
        return result
    for head in HEADS:
        for impl in ("cuda", "cuda-store") if head in STORE_HEADS else ("cuda",):
            times = kernel_times(head, x, w, y, impl)
            for key in MIN_INSTR:
                if key in times:
                    times[f"{key}_instr_per_triple_at_full_issue"] = times[key] * per_ms / triples
            result[f"kernels_{head}" + ("_store" if impl == "cuda-store" else "")] = times
            print(head, impl, json.dumps(times, default=str)[:600], flush=True)
    use("cuda")
    n_exp = math.sqrt(d)
    loss_box = {}

    def forward_only():
        loss_box["loss"] = kernels.fused_harmonic_loss(x, w, y, distance="manhattan", n=n_exp, eps=1e-8)

    def backward_only():
        x.grad = w.grad = None
        loss_box["loss"].backward(retain_graph=True)

    result["manhattan_forward_ms"] = time_ms(forward_only, 10)
    result["manhattan_backward_ms"] = time_ms(backward_only, 10)
    for impl in ("cuda", "cuda-store", "triton"):
        torch.cuda.reset_peak_memory_stats()
        fwd_bwd(impl, "manhattan", x, w, y)()
        result[f"manhattan_{impl}_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return result


NCU_HEADS = ("minkowski_p1.5", "chebyshev_smooth", "canberra")  # the special-function kinds, sums kept


def ncu_target():
    """The process ncu profiles: one CUDA forward+backward of each NCU_HEADS head (sums kept) at NCU_SHAPE."""
    n, d, v = NCU_SHAPE
    x, w, y = make_inputs(n, d, v, seed=4)
    for head in NCU_HEADS:
        fwd_bwd("cuda-store", head, x, w, y)()
    torch.cuda.synchronize()


def stage_ncu(budget_s):
    """ncu at NCU_SHAPE (manhattan), one run: executed instructions per (row, centre, feature) triple, issue-slot
    use, and where the warps wait (the WarpStateStats section: warps stalled per issued instruction, by reason,
    largest first)."""
    import csv
    import io

    ncu = shutil.which("ncu")
    if ncu is None:
        return {"error": "ncu not on PATH"}
    cmd = [ncu, "--csv", "--page", "raw", "--section", "WarpStateStats", "--section", "ComputeWorkloadAnalysis",
           "--metrics",
           "sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active", "--clock-control", "none",
           "--kernel-name", "regex:forward_kernel|grad_xw_kernel", sys.executable,
           str(Path(__file__).resolve()), "--ncu-target"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget_s, cwd=REPO)
    n, d, v = NCU_SHAPE
    lines = [line for line in proc.stdout.splitlines() if line.startswith('"')]
    rows = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        name = next((k for k in MIN_INSTR if k in row.get("Kernel Name", "")), None)
        if name is None:
            continue
        found, stalls = {}, {}
        for metric, value in row.items():
            try:
                number = float(str(value).replace(",", ""))
            except ValueError:
                continue
            if metric in ("sm__inst_executed.sum", "smsp__issue_active.avg.pct_of_peak_sustained_active"):
                found[metric] = number
            elif metric and ("pipe_xu" in metric or "pipe_fma" in metric or "pipe_alu" in metric) and "pct" in metric:
                found[metric] = number  # pipe use: xu is the special-function (MUFU) pipe
            elif metric and "issue_stalled_" in metric and "per_issue_active" in metric:
                stalls[metric.split("issue_stalled_")[1].split("_per_issue")[0]] = number
        if "sm__inst_executed.sum" in found:
            found["thread_instr_per_triple"] = found["sm__inst_executed.sum"] * 32 / (n * v * d)
        found["stalls_per_issue"] = dict(sorted(stalls.items(), key=lambda kv: -kv[1])[:10])
        rows[f"{name} {row.get('Kernel Name', '')[len(name) :][:60]}"] = found
    return {"shape": NCU_SHAPE, "kernels": rows, "returncode": proc.returncode, "stderr_tail": proc.stderr[-800:],
            "stdout_head": "\n".join(lines[:2])[:1500]}  # fmt: skip


def stage_gpt_step(budget_s, store):
    folder = Path("/tmp/l1_cuda_gpt_step")
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpt_step_benchmark.py"), "--out", str(folder), "--heads",
           "baseline", "manhattan", "--no-reference", "--steps", "6", "--warmup", "2"]  # fmt: skip
    env = dict(os.environ, HARMONIC_L1_CUDA="1", HARMONIC_L1_CUDA_STORE="1" if store else "0", PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget_s, cwd=REPO, env=env)
    result = {"store": store, "returncode": proc.returncode, "stdout_tail": proc.stdout[-2000:],
              "stderr_tail": proc.stderr[-1500:]}  # fmt: skip
    if (folder / "gpt_step.json").exists():
        result["rows"] = json.loads((folder / "gpt_step.json").read_text())["rows"]
    if (folder / "gpt_step_profile.txt").exists():  # where a step's time goes, kept beside the report
        shutil.copy(folder / "gpt_step_profile.txt", OUT_DIR[0] / f"gpt_step_profile_store{int(store)}.txt")
    return result


def faster_store(data):
    """Whether the bench found the kept sums (HARMONIC_L1_CUDA_STORE=1) faster for manhattan."""
    rows = {
        r["impl"]: r.get("ms") for r in data["stages"].get("bench", {}).get("rows", []) if r["head"] == "manhattan"
    }
    return bool(rows.get("cuda-store") and rows.get("cuda") and rows["cuda-store"] < rows["cuda"])


def fmt(value, digits=3):
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return "-" if value is None else str(value)


def markdown(data):
    st = data["stages"]
    info = st.get("info", {})
    lines = [f"# CUDA L1 kernels on {info.get('gpu', '?')} (torch {info.get('torch')}, {info.get('nvcc')})", ""]
    build = st.get("build")
    if build:
        lines += [f"Build: ok={build['ok']} in {build['seconds']:.0f} s {build['reason'][:300]}", ""]
        lines += [
            f"- {k}: {v['registers']} registers, spills {v['spill_store_load_bytes']}"
            for k, v in build["ptxas"].items()
        ]
        lines.append("")
    if "check_vocab" in st:
        lines += ["## Against the fp32 reference, 64 rows x V = 50304, bf16", "",
                  "| head | impl | loss | dx | dW | meets 1e-7 / 2e-4 |", "|---|---|---|---|---|---|"]  # fmt: skip
        for r in st["check_vocab"]:
            lines.append(f"| {r['head']} | {r['impl']} | {fmt(r['loss_rel_err'])} | {fmt(r['dx_rel_err'])} | "
                         f"{fmt(r['dW_rel_err'])} | {r['meets_bar']} |")  # fmt: skip
        lines.append("")
    edges = st.get("check_edges")
    if edges and edges.get("ok"):
        bad = [r for r in edges["cases"] if not r["pass"]]
        lines += [
            f"Edge cases ({len(edges['cases'])}): all pass = {edges['all_pass']}; failing: {json.dumps(bad)[:1500]}",
            "",
        ]
    elif edges:
        lines += ["Edge cases: the child process failed (CUDA stages skipped):", "", "```",
                  edges.get("stderr_tail", "")[-1500:], edges.get("memcheck_tail", "")[-2500:], "```", ""]  # fmt: skip
    if "agree" in st:
        lines += [
            "## CUDA vs Triton at N=8192, D=768, V=50304",
            "",
            "| head | impl | loss | dx | dW |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {r['head']} | {r.get('impl')} | {fmt(r['loss_rel_err'])} | {fmt(r.get('dx_rel_err'))} | {fmt(r.get('dW_rel_err'))} |"
                  for r in st["agree"]]  # fmt: skip
        lines.append("")
    bench = st.get("bench")
    if bench:
        lines += ["## forward + backward at N=8192, D=768, V=50304 (bf16)", "",
                  f"1 instruction per triple at full issue = {bench['bound_ms_per_instr_per_triple']:.2f} ms "
                  f"(the issue's 6-instruction bound: {6 * bench['bound_ms_per_instr_per_triple']:.1f} ms)", "",
                  "| head | impl | ms | x CE | instr / triple at full issue | x 6-instr bound |", "|---|---|---|---|---|---|"]  # fmt: skip
        lines += [
            f"| {r['head']} | {r['impl']} | {fmt(r.get('ms'))} | {fmt(r.get('vs_ce'))} | "
            f"{fmt(r.get('instr_per_triple_at_full_issue'))} | {fmt(r.get('vs_60ms_bound'))} |"
            for r in bench["rows"]
        ]
        lines += ["", f"manhattan CUDA forward {fmt(bench.get('manhattan_forward_ms'))} ms, backward "
                  f"{fmt(bench.get('manhattan_backward_ms'))} ms; peak GB cuda {fmt(bench.get('manhattan_cuda_peak_gb'))}, "
                  f"cuda-store {fmt(bench.get('manhattan_cuda-store_peak_gb'))}, triton {fmt(bench.get('manhattan_triton_peak_gb'))}", ""]  # fmt: skip
        for key in [k for k in bench if k.startswith("kernels_")]:
            times = bench[key]
            cells = [f"{k} {fmt(times.get(k))} ms = {fmt(times.get(k + '_instr_per_triple_at_full_issue'))} instr/triple"
                     for k in MIN_INSTR if k in times]  # fmt: skip
            lines.append(f"- {key[len('kernels_') :]}: " + "; ".join(cells))
        lines.append("")
    if "ncu" in st:
        lines += [f"ncu {st['ncu'].get('shape')}: " + json.dumps(st["ncu"].get("kernels"))[:4000], ""]

    for stage in ("gpt_step", "gpt_step_other"):
        for r in st.get(stage, {}).get("rows", []):
            lines.append(f"- GPT-2 step, HARMONIC_L1_CUDA_STORE={int(st[stage]['store'])}, {r.get('head')} "
                         f"({r.get('path')}): {fmt(r.get('tokens_per_s'))} tokens/s, x CE {fmt(r.get('vs_ce'))} "
                         f"{r.get('error', '')}")  # fmt: skip
    if data["errors"]:
        lines += ["", "## Stage errors", ""] + [
            f"- {k}: {v.splitlines()[0][:400]}" for k, v in data["errors"].items()
        ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "l1_cuda_check_out")))
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting optional stages after this")
    parser.add_argument("--ncu-target", action="store_true", help="(internal) the process ncu profiles")
    parser.add_argument("--edges-only", action="store_true", help="(internal) the edge cases, JSON on stdout")
    args = parser.parse_args(argv)
    if args.ncu_target:
        os.environ["HARMONIC_L1_CUDA"] = "1"
        return ncu_target()
    if args.edges_only:
        print("EDGES_JSON " + json.dumps(stage_check_edges(), default=str), flush=True)
        return None
    args.out.mkdir(parents=True, exist_ok=True)
    OUT_DIR[0] = args.out
    report = Report(args.out)
    report.stage("info", stage_info)
    report.stage("build", lambda: stage_build(args.out))
    built = report.data["stages"].get("build", {}).get("ok", False)
    if built:
        report.stage("check_edges", lambda: stage_edges_isolated(240.0))
        built = report.data["stages"].get("check_edges", {}).get("ok", False)
    if built:
        report.stage("check_vocab", stage_check_vocab)
        report.stage("agree", stage_agree)
    info = report.data["stages"].get("info") or {"sms": 132, "clock_hz": 1.98e9}
    report.stage("bench", lambda: stage_bench(info, built))
    if built and args.budget_s - elapsed() > 150:
        report.stage("ncu", lambda: stage_ncu(min(100.0, args.budget_s - elapsed() - 120)))
    if built and args.budget_s - elapsed() > 120:
        report.stage("gpt_step", lambda: stage_gpt_step(args.budget_s - elapsed(), faster_store(report.data)))
    if built and args.budget_s - elapsed() > 90:  # the other backward mode, time permitting
        report.stage(
            "gpt_step_other", lambda: stage_gpt_step(args.budget_s - elapsed(), not faster_store(report.data))
        )
    print(markdown(report.data), flush=True)


if __name__ == "__main__":
    main()
