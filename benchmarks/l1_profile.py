"""Profile the elementwise fused heads (harmonic/kernels/l1_heads.py): forward and backward times per distance, as a
fraction of the fp32 CUDA-core bound, and (when ncu is on PATH) instructions executed per (row, centre, feature)
triple, issue-slot use and registers of the two kernels.

    python benchmarks/l1_profile.py --out DIR            # GPU: N=8192, D=768, V=50304, bf16 (~4 min on an H100)
    python benchmarks/l1_profile.py --out DIR --tiny     # CPU smoke test: TRITON_INTERPRET=1, tiny shapes, no ncu
    python benchmarks/l1_profile.py --ncu-target KIND    # one small forward + backward, the process ncu profiles

Timing: `loss = fused(x, w, y)` with x, w requiring grad (the training-mode forward) and `loss.backward()` are timed
separately with CUDA events; median of 3 after one warm-up. Bound: N V D triples x 2 instructions (forward: one
subtraction, one accumulation) and x 10 (backward: recomputed forward, then 4 per triple for dx and 4 for dW) over
SMs x 128 fp32 lanes x SM clock. Writes DIR/l1_profile.json and DIR/l1_profile.md and prints the markdown.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time

CASES = [  # (label, registry distance, params)
    ("manhattan", "manhattan", {}),
    ("hamming_soft", "hamming_soft", {}),
    ("minkowski-p3", "minkowski", {"p": 3.0}),
    ("minkowski-p1.5", "minkowski", {"p": 1.5}),
    ("chebyshev", "chebyshev", {}),
    ("chebyshev_smooth", "chebyshev_smooth", {}),
    ("canberra", "canberra", {}),
    ("bray_curtis", "bray_curtis", {}),
    ("bray_curtis_abs", "bray_curtis_abs", {}),
]
NCU_CASES = ("manhattan", "canberra")
NCU_SHAPE = (1024, 768, 8192)  # N, D, V of the --ncu-target run
NCU_METRICS = (
    "smsp__inst_executed.sum",
    "sm__inst_executed.sum",
    "smsp__issue_active.avg.pct_of_peak_sustained_active",
    "sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active",
    "l1tex__t_bytes.sum",
    "launch__registers_per_thread",
)
NCU_KERNELS = "regex:_forward_kernel|_backward_outer_kernel"
FWD_INSTR, BWD_INSTR = 2, 10  # fp32 instructions per triple in the bounds (see the docstring)
BUDGET_S = 210.0  # stop timing further distances after this long (ncu still runs)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="output directory (l1_profile.json, l1_profile.md)")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test under TRITON_INTERPRET=1")
    parser.add_argument("--ncu-target", default=None, metavar="KIND", help="(internal) one small fwd+bwd for ncu")
    parser.add_argument("--kinds", default=None, help="comma-separated labels to time (default: all)")
    parser.add_argument("--no-ncu", action="store_true", help="skip the ncu runs")
    return parser.parse_args(argv)


def make_inputs(torch, n, d, v, device, seed=0):
    """As benchmarks/heads_benchmark.py make_inputs: bf16 x ~ N(0, 1), w ~ N(0, 0.25), some ignored targets."""
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(n, d, device=device, generator=gen).bfloat16().requires_grad_()
    w = (torch.randn(v, d, device=device, generator=gen) * 0.5).bfloat16().requires_grad_()
    y = torch.randint(0, v, (n,), device=device, generator=gen)
    y[::97] = -100
    return x, w, y


def fused_fn(distance, params, dim):
    from harmonic import kernels

    def fn(x, w, y):
        return kernels.fused_harmonic_loss(x, w, y, distance=distance, n=math.sqrt(dim), eps=1e-8, params=params)

    return fn


def sm_clock_hz(torch):
    """(SM clock in Hz, where it came from)."""
    props = torch.cuda.get_device_properties(0)
    khz = getattr(props, "clock_rate", None)
    if khz:
        return float(khz) * 1e3, "torch.cuda.get_device_properties(0).clock_rate"
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        mhz = float(out.stdout.strip().splitlines()[0])
        return mhz * 1e6, "nvidia-smi clocks.max.sm"
    except Exception as err:  # noqa: BLE001
        return 1.755e9, f"assumed 1.755 GHz (H100 SXM boost; nvidia-smi failed: {err!r})"


def time_case(torch, fn, x, w, y, reps, warmup, on_gpu):
    """Median (forward ms, backward ms) over reps, after warm-up runs."""

    def clear():
        x.grad = None
        w.grad = None

    for _ in range(warmup):
        clear()
        fn(x, w, y).backward()
    if on_gpu:
        torch.cuda.synchronize()
    fwd, bwd = [], []
    for _ in range(reps):
        clear()
        if on_gpu:
            events = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
            events[0].record()
            loss = fn(x, w, y)
            events[1].record()
            loss.backward()
            events[2].record()
            torch.cuda.synchronize()
            fwd.append(events[0].elapsed_time(events[1]))
            bwd.append(events[1].elapsed_time(events[2]))
        else:
            t0 = time.perf_counter()
            loss = fn(x, w, y)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
    finite = bool(torch.isfinite(loss).item()) and all(
        bool(torch.isfinite(t.grad).all().item()) for t in (x, w) if t.grad is not None
    )
    return statistics.median(fwd), statistics.median(bwd), float(loss.item()), finite


def ncu_target(label):
    """The process ncu profiles: one forward + backward of one distance at NCU_SHAPE (kernels JIT-compile here too)."""
    import torch

    distance, params = next((dist, prm) for lab, dist, prm in CASES if lab == label)
    n, d, v = NCU_SHAPE
    x, w, y = make_inputs(torch, n, d, v, "cuda")
    fused_fn(distance, params, d)(x, w, y).backward()
    torch.cuda.synchronize()


def _number(text):
    try:
        return float(str(text).replace(",", ""))
    except ValueError:
        return None


def parse_ncu_csv(text):
    """{kernel name: {metric: value}} from `ncu --csv` output (lines before the header are ncu's own log)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        raise ValueError("no CSV header in ncu output")
    kernels = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        name = row.get("Kernel Name", "?")
        key = "_backward_outer_kernel" if "_backward_outer_kernel" in name else name
        key = "_forward_kernel" if "_forward_kernel" in name else key
        entry = kernels.setdefault(key, {})
        value = _number(row.get("Metric Value"))
        entry[row.get("Metric Name")] = value if value is not None else row.get("Metric Value")
    return kernels


def run_ncu(label, repo_root):
    """Per kernel: instructions per triple, issue-slot use, registers (or the error text)."""
    ncu = shutil.which("ncu")
    if ncu is None:
        return {"error": "ncu not on PATH"}
    env = dict(os.environ, PYTHONPATH=repo_root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [
        ncu, "--csv", "--clock-control", "none", "--kernel-name", NCU_KERNELS, "--metrics", ",".join(NCU_METRICS),
        sys.executable, os.path.abspath(__file__), "--ncu-target", label,
    ]  # fmt: skip
    result = {"command": " ".join(cmd)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=repo_root)
    except Exception as err:  # noqa: BLE001
        result["error"] = repr(err)
        return result
    result["returncode"] = proc.returncode
    try:
        kernels = parse_ncu_csv(proc.stdout)
    except Exception as err:  # noqa: BLE001
        result["error"] = f"{err!r}; stdout tail: {proc.stdout[-1500:]}; stderr tail: {proc.stderr[-1500:]}"
        return result
    n, d, v = NCU_SHAPE
    triples = n * v * d
    for metrics in kernels.values():
        inst = metrics.get("sm__inst_executed.sum")
        if isinstance(inst, float):
            metrics["thread_instructions_per_triple"] = inst * 32 / triples
    result["kernels"] = kernels
    if proc.returncode != 0:
        result["error"] = f"ncu exited {proc.returncode}; stderr tail: {proc.stderr[-1500:]}"
    return result


def fmt(value, digits=1):
    return "-" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def markdown(report):
    lines = [
        f"# l1_heads profile ({report['device']})",
        "",
        f"N={report['shape']['N']}, D={report['shape']['D']}, V={report['shape']['V']}, bf16 inputs; "
        f"tile {report['config']['BLOCK']}, FEATURE_BLOCK {report['config']['FEATURE_BLOCK']}, "
        f"PROGRAMS_PER_SM {report['config']['PROGRAMS_PER_SM']}, backward {report['config']['BACKWARD']}; "
        f"median of {report['reps']} after {report['warmup']} warm-up.",
        "",
    ]
    bound = report.get("bound")
    if bound:
        lines += [
            f"CUDA-core bound: {bound['sms']} SMs x 128 lanes x {bound['clock_hz'] / 1e9:.3f} GHz "
            f"({bound['clock_source']}): forward {bound['forward_ms']:.1f} ms ({FWD_INSTR} instr/triple), "
            f"backward {bound['backward_ms']:.1f} ms ({BWD_INSTR} instr/triple).",
            "",
        ]
    lines += [
        "| distance | forward ms | backward ms | total ms | fwd bound fraction | bwd bound fraction | finite |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["timings"]:
        if "error" in row:
            lines.append(f"| {row['label']} | error: {row['error'][:200]} | | | | | |")
            continue
        lines.append(
            f"| {row['label']} | {fmt(row['forward_ms'])} | {fmt(row['backward_ms'])} | {fmt(row['total_ms'])} | "
            f"{fmt(row.get('forward_bound_fraction'), 2)} | {fmt(row.get('backward_bound_fraction'), 2)} | "
            f"{row['finite']} |"
        )
    if report.get("skipped"):
        lines += ["", f"Skipped (time budget): {', '.join(report['skipped'])}"]
    if report.get("ncu"):
        n, d, v = NCU_SHAPE
        lines += [
            "",
            f"## ncu (N={n}, D={d}, V={v}, one forward + backward, --clock-control none)",
            "",
            "| distance | kernel | thread instr / triple | issue active % | FMA pipe % | ALU pipe % | L1 bytes | regs |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, result in report["ncu"].items():
            for name, m in (result.get("kernels") or {}).items():
                lines.append(
                    f"| {label} | {name} | {fmt(m.get('thread_instructions_per_triple'), 2)} | "
                    f"{fmt(m.get('smsp__issue_active.avg.pct_of_peak_sustained_active'))} | "
                    f"{fmt(m.get('sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active'))} | "
                    f"{fmt(m.get('sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active'))} | "
                    f"{fmt(m.get('l1tex__t_bytes.sum'), 0)} | {fmt(m.get('launch__registers_per_thread'), 0)} |"
                )
            if result.get("error"):
                lines.append(f"| {label} | error | {result['error'][:300]} | | | | | |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    if args.tiny:
        os.environ["TRITON_INTERPRET"] = "1"  # before harmonic.kernels is imported (the decorators read it)
    if args.ncu_target:
        ncu_target(args.ncu_target)
        return 0
    if not args.out:
        raise SystemExit("--out DIR is required")
    import torch

    from harmonic.kernels import l1_heads

    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    on_gpu = not args.tiny
    if on_gpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: use --tiny for the CPU smoke test")
    n, d, v = (64, 32, 80) if args.tiny else (8192, 768, 50304)
    reps, warmup = (1, 0) if args.tiny else (3, 1)
    device = "cuda" if on_gpu else "cpu"
    wanted = set(args.kinds.split(",")) if args.kinds else None
    cases = [c for c in CASES if wanted is None or c[0] in wanted]
    report = {
        "device": torch.cuda.get_device_name(0) if on_gpu else "cpu (TRITON_INTERPRET=1)",
        "shape": {"N": n, "D": d, "V": v},
        "config": {
            "BLOCK": list(l1_heads._blocks()),
            "FEATURE_BLOCK": l1_heads.FEATURE_BLOCK,
            "PROGRAMS_PER_SM": l1_heads.PROGRAMS_PER_SM,
            "BACKWARD": l1_heads.BACKWARD,
        },
        "reps": reps,
        "warmup": warmup,
        "timings": [],
        "skipped": [],
    }
    triples = n * v * d
    if on_gpu:
        clock, source = sm_clock_hz(torch)
        sms = torch.cuda.get_device_properties(0).multi_processor_count
        per_ms = sms * 128 * clock / 1e3
        report["bound"] = {
            "sms": sms,
            "clock_hz": clock,
            "clock_source": source,
            "forward_ms": triples * FWD_INSTR / per_ms,
            "backward_ms": triples * BWD_INSTR / per_ms,
        }
    start = time.perf_counter()
    x, w, y = make_inputs(torch, n, d, v, device)
    for label, distance, params in cases:
        if time.perf_counter() - start > BUDGET_S:
            report["skipped"].append(label)
            continue
        row = {"label": label, "distance": distance, "params": params}
        try:
            fwd, bwd, loss, finite = time_case(torch, fused_fn(distance, params, d), x, w, y, reps, warmup, on_gpu)
            row.update(forward_ms=fwd, backward_ms=bwd, total_ms=fwd + bwd, loss=loss, finite=finite)
            if "bound" in report:
                row["forward_bound_fraction"] = report["bound"]["forward_ms"] / fwd
                row["backward_bound_fraction"] = report["bound"]["backward_ms"] / bwd
        except Exception as err:  # noqa: BLE001
            row["error"] = repr(err)
        row["elapsed_s"] = time.perf_counter() - start
        report["timings"].append(row)
        print(json.dumps(row), flush=True)
    if on_gpu and not args.no_ncu:
        del x, w, y
        torch.cuda.empty_cache()
        report["ncu"] = {label: run_ncu(label, repo_root) for label in NCU_CASES}
    report["wall_s"] = time.perf_counter() - start
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "l1_profile.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    text = markdown(report)
    with open(os.path.join(args.out, "l1_profile.md"), "w") as handle:
        handle.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
