"""Fused harmonic heads on a GPU: correctness at real shapes, then forward+backward time and peak memory.

    PYTHONPATH=. python benchmarks/heads_benchmark.py --out results/bench/heads          # everything
    PYTHONPATH=. python benchmarks/heads_benchmark.py --only check --out ...             # correctness only

What it measures (one process, one GPU, bf16 inputs x: N x D, W: V x D, random targets):
- check: fused loss and gradients (dx, dW, and the metric for mahalanobis) against the reference implementation
  (harmonic.pairwise -> -n log(d + eps) -> F.cross_entropy, which computes in fp32 from the same bf16 values), as
  relative errors ||fused - ref|| / ||ref||. Matmul-type heads at the full GPT-2 shape; elementwise heads on the
  first CHECK_ROWS rows with the full vocabulary (their reference needs minutes at full N).
- bench: forward+backward time (median of CUDA-event-timed repeats after warm-up) and peak allocated memory
  (inputs and gradients included) for: CE eager (x @ W.T + F.cross_entropy), CE compiled, each fused head, the
  eager reference, and for matmul-type heads torch.compile of the reference. Elementwise references cannot run at
  full N (the broadcast is N x V x D): they are timed at N = CHECK_ROWS and reported as that.
- tune: times the fused manhattan and euclidean heads under a few tile configurations and keeps the fastest for
  the rest of the run (reported in the output; the kernel modules' defaults are the ones an H100 chose).
- profile: torch.profiler CUDA-kernel breakdown of CE eager, fused euclidean and fused manhattan (<out>/profile.txt).
- train: a few Adam steps of each fused head on one batch at the GPT-2 shape (loss must fall).
Writes <out>/heads_benchmark.json and <out>/heads_benchmark.md (with GPU name, torch and triton versions).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

SHAPES = {"gpt2": (8192, 768, 50304), "qwen": (8192, 896, 151936)}
CHECK_ROWS = 64
COMPARE_L1_BACKWARD = ("manhattan", "bray_curtis")  # also timed with the other l1_heads backward variant
SAVE_HOOKS = []  # main() registers a writer here so partial results survive a time limit
MATMUL_TYPE = ("euclidean", "cosine", "mahalanobis", "mahalanobis_diagonal", "hamming_hard")


def head_cases():
    """(label, distance, params) for every fused head; minkowski at p = 3 (p = 2 runs as euclidean)."""
    from harmonic import kernels

    cases = []
    for name in kernels.FUSED:
        params = {"p": 3.0} if name == "minkowski" else {}
        cases.append((name if name != "minkowski" else "minkowski-p3", name, params))
    cases.append(("minkowski-p1.5", "minkowski", {"p": 1.5}))
    return cases


def make_inputs(n, d, v, seed=0, metric_for=None):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(n, d, device="cuda", generator=gen).bfloat16().requires_grad_()
    w = (torch.randn(v, d, device="cuda", generator=gen) * 0.5).bfloat16().requires_grad_()
    y = torch.randint(0, v, (n,), device="cuda", generator=gen)
    y[::97] = -100  # some ignored positions, as padding in an LM batch
    factor = None
    if metric_for == "mahalanobis":
        factor = (torch.eye(d, device="cuda") + 0.02 * torch.randn(d, d, device="cuda", generator=gen)).tril()
        factor.requires_grad_()
    elif metric_for == "mahalanobis_diagonal":
        factor = (0.05 * torch.randn(d, device="cuda", generator=gen)).exp().requires_grad_()
    return x, w, y, factor


def loss_fn(which, distance, params, n_exp, training=True):
    """The loss under test; training=True as in a training step (hamming_gumbel draws its noise then)."""
    from harmonic import kernels

    def ce(x, w, y, factor):
        return F.cross_entropy(x @ w.t(), y, ignore_index=-100)

    def ce_fp32_logits(x, w, y, factor):
        return F.cross_entropy((x @ w.t()).float(), y, ignore_index=-100)

    def fused(x, w, y, factor):
        return kernels.fused_harmonic_loss(
            x, w, y, distance=distance, n=n_exp, eps=1e-8, params=params, factor=factor, training=training
        )

    def reference(x, w, y, factor):
        return kernels.reference_harmonic_loss(
            x, w, y, distance=distance, n=n_exp, eps=1e-8, params=params, factor=factor, training=training
        )

    return {"ce": ce, "ce_fp32": ce_fp32_logits, "fused": fused, "reference": reference}[which]


def time_fwd_bwd(fn, x, w, y, factor, max_ms=1500.0):
    """Median ms of forward+backward, and peak allocated GB during one call (inputs and grads included)."""
    inputs = [t for t in (x, w, factor) if t is not None]

    def step():
        for t in inputs:
            t.grad = None
        fn(x, w, y, factor).backward()

    step()
    torch.cuda.synchronize()
    for t in inputs:
        t.grad = None
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    step()
    end.record()
    torch.cuda.synchronize()
    first = start.elapsed_time(end)
    peak = torch.cuda.max_memory_allocated() / 1e9
    repeats = max(3, min(20, int(max_ms / max(first, 1e-3))))
    times = []
    for _ in range(repeats):
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), peak, repeats


def rel_err(got, want):
    return float((got.float() - want.float()).norm() / want.float().norm().clamp_min(1e-30))


def run_check(shape_name, results):
    n, d, v = SHAPES[shape_name]
    n_exp = math.sqrt(d)
    for label, distance, params in head_cases():
        rows = n if distance in MATMUL_TYPE else CHECK_ROWS
        x, w, y, factor = make_inputs(rows, d, v, seed=1, metric_for=distance)
        inputs = [t for t in (x, w, factor) if t is not None]
        out = {}
        for which in ("fused", "reference"):
            loss = loss_fn(which, distance, params, n_exp, training=False)(x, w, y, factor)  # no noise: comparable
            out[which] = (loss.detach(), torch.autograd.grad(loss, inputs))
            del loss
        row = {
            "shape": shape_name,
            "head": label,
            "rows": rows,
            "D": d,
            "V": v,
            "loss_fused": float(out["fused"][0]),
            "loss_reference": float(out["reference"][0]),
            "loss_rel_err": rel_err(out["fused"][0], out["reference"][0]),
        }
        for name, got, want in zip(("dx", "dW", "dmetric"), out["fused"][1], out["reference"][1]):
            row[f"{name}_rel_err"] = rel_err(got, want)
            row[f"{name}_finite"] = bool(torch.isfinite(got).all())
        results.append(row)
        print("check", json.dumps(row), flush=True)
        for hook in SAVE_HOOKS:
            hook()
        del out, x, w, factor
        torch.cuda.empty_cache()


def run_bench(shape_name, heads, results, compiled=True):
    n, d, v = SHAPES[shape_name]
    n_exp = math.sqrt(d)

    def record(label, method, fn, rows=n, metric_for=None):
        x, w, y, factor = make_inputs(rows, d, v, seed=2, metric_for=metric_for)
        try:
            ms, peak, repeats = time_fwd_bwd(fn, x, w, y, factor)
            row = {
                "shape": shape_name,
                "head": label,
                "method": method,
                "N": rows,
                "D": d,
                "V": v,
                "ms": ms,
                "peak_gb": peak,
                "repeats": repeats,
            }
        except Exception as error:  # noqa: BLE001 - one failing head must not hide the others
            torch.cuda.empty_cache()
            row = {
                "shape": shape_name,
                "head": label,
                "method": method,
                "N": rows,
                "D": d,
                "V": v,
                "ms": None,
                "peak_gb": None,
                "error": f"{type(error).__name__}: {str(error)[:200]}",
            }
        results.append(row)
        print("bench", json.dumps(row), flush=True)
        for hook in SAVE_HOOKS:
            hook()
        del x, w, factor
        torch.cuda.empty_cache()

    record("CE", "eager", loss_fn("ce", None, None, 1.0))
    record("CE", "eager, fp32 logits", loss_fn("ce_fp32", None, None, 1.0))
    if compiled:
        record("CE", "compiled", torch.compile(loss_fn("ce", None, None, 1.0)))
    for label, distance, params in head_cases():
        if label not in heads:
            continue
        record(label, "fused", loss_fn("fused", distance, params, n_exp), metric_for=distance)
        if label in COMPARE_L1_BACKWARD and shape_name == "gpt2":
            from harmonic.kernels import l1_heads

            default, l1_heads.BACKWARD = l1_heads.BACKWARD, "reduce"
            record(label, "fused, per-feature-reduction backward", loss_fn("fused", distance, params, n_exp))
            l1_heads.BACKWARD = default
        ref = loss_fn("reference", distance, params, n_exp)
        if distance in MATMUL_TYPE:
            record(label, "eager", ref, metric_for=distance)
            if compiled and distance in ("euclidean", "cosine") and shape_name == "gpt2":
                record(label, "compiled", torch.compile(ref), metric_for=distance)
        else:
            record(label, f"eager (N={CHECK_ROWS} only)", ref, rows=CHECK_ROWS, metric_for=distance)


L1_CONFIGS = [  # ((BN, BV, num_warps), features per outer-product block, programs per SM)
    ((64, 64, 4), 32, 4),
    ((128, 64, 8), 32, 4),
    ((64, 128, 8), 32, 4),
    ((128, 128, 8), 32, 2),
    ((64, 64, 4), 64, 4),
    ((128, 64, 4), 64, 2),
    ((64, 128, 4), 64, 2),
    ((128, 128, 8), 64, 2),
    ((64, 64, 4), 128, 4),
    ((64, 64, 2), 64, 8),
]
MATMUL_CONFIGS = [  # ((rows, columns, num_warps) of an elementwise tile, MB of chunk buffers)
    ((32, 256, 8), 1024),
    ((32, 256, 8), 512),
    ((16, 512, 8), 512),
    ((64, 256, 8), 512),
    ((32, 256, 4), 512),
    ((16, 512, 8), 1024),
    ((32, 256, 8), 2048),
]


def run_tune(results):
    """Time the fused manhattan and euclidean heads at GPT-2 shape under each tile configuration; keep the fastest
    (set on the kernel modules for the rest of this run, and reported)."""
    from harmonic.kernels import l1_heads, matmul_heads

    n, d, v = SHAPES["gpt2"]
    x, w, y, _ = make_inputs(n, d, v, seed=4)
    best = {}
    for family, configs, head in (("l1", L1_CONFIGS, "manhattan"), ("matmul", MATMUL_CONFIGS, "euclidean")):
        for config in configs:
            if family == "l1":
                l1_heads.BLOCK, l1_heads.FEATURE_BLOCK, l1_heads.PROGRAMS_PER_SM = config
            else:
                matmul_heads.TILE, matmul_heads.CHUNK_BYTES = config[0], config[1] * 2**20
            try:
                ms, peak, _ = time_fwd_bwd(loss_fn("fused", head, {}, math.sqrt(d)), x, w, y, None, max_ms=800.0)
            except Exception as error:  # noqa: BLE001 - e.g. a tile needing more shared memory than the GPU has
                ms, peak = None, None
                print("tune failed", family, config, type(error).__name__, str(error)[:200], flush=True)
            row = {"family": family, "head": head, "config": list(config), "ms": ms, "peak_gb": peak}
            results.append(row)
            print("tune", json.dumps(row), flush=True)
            if ms is not None and (family not in best or ms < best[family][1]):
                best[family] = (config, ms)
    l1_heads.BLOCK, l1_heads.FEATURE_BLOCK, l1_heads.PROGRAMS_PER_SM = best["l1"][0]
    matmul_heads.TILE, matmul_heads.CHUNK_BYTES = best["matmul"][0][0], best["matmul"][0][1] * 2**20
    print("tune chosen", json.dumps({k: list(v[0]) for k, v in best.items()}), flush=True)
    return {k: list(v[0]) for k, v in best.items()}


def run_profile(out: Path):
    """CUDA kernel time breakdown of one forward+backward (CE eager, fused euclidean, fused manhattan)."""
    from torch.profiler import ProfilerActivity, profile

    n, d, v = SHAPES["gpt2"]
    lines = []
    for label, which, distance in (("CE eager", "ce", None), ("euclidean fused", "fused", "euclidean"),
                                   ("manhattan fused", "fused", "manhattan")):  # fmt: skip
        x, w, y, _ = make_inputs(n, d, v, seed=5)
        fn = loss_fn(which, distance, {}, math.sqrt(d))
        fn(x, w, y, None).backward()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn(x, w, y, None).backward()
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60)
        lines += [f"== {label} (N={n}, D={d}, V={v}, bf16) ==", table, ""]
    (out / "profile.txt").write_text("\n".join(lines))
    print("\n".join(lines), flush=True)


def run_train(shape_name, results, steps=4):
    n, d, v = SHAPES[shape_name]
    for label, distance, params in head_cases():
        x, w, y, factor = make_inputs(n, d, v, seed=3, metric_for=distance)
        fn = loss_fn("fused", distance, params, math.sqrt(d))
        leaves = [t for t in (x, w, factor) if t is not None]
        opt = torch.optim.Adam(leaves, lr=1e-2)
        losses = []
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = fn(x, w, y, factor)
            loss.backward()
            opt.step()
            losses.append(float(loss))
        row = {"shape": shape_name, "head": label, "losses": losses, "falls": losses[-1] < losses[0]}
        results.append(row)
        print("train", json.dumps(row), flush=True)
        for hook in SAVE_HOOKS:
            hook()


def markdown(meta, checks, benches, trains):
    lines = [
        f"GPU: {meta['gpu']}; torch {meta['torch']}; triton {meta['triton']}; Python {meta['python']}.",
        f"Command: `{meta['command']}`",
        f"Tile configurations chosen by --tune: {meta.get('chosen_configs', 'defaults')}",
        "",
    ]
    if checks:
        lines += [
            "Correctness (relative error of fused vs reference, bf16 inputs):",
            "",
            "| shape | head | rows | loss | dx | dW | metric |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in checks:
            metric = f"{r['dmetric_rel_err']:.1e}" if "dmetric_rel_err" in r else ""
            lines.append(
                f"| {r['shape']} | {r['head']} | {r['rows']} | {r['loss_rel_err']:.1e} | "
                f"{r['dx_rel_err']:.1e} | {r['dW_rel_err']:.1e} | {metric} |"
            )
        lines.append("")
    for shape in dict.fromkeys(r["shape"] for r in benches):
        rows = [r for r in benches if r["shape"] == shape]
        ce = next((r["ms"] for r in rows if r["head"] == "CE" and r["method"] == "eager"), None)
        n, d, v = SHAPES[shape]
        lines += [
            f"Forward+backward at N={n}, D={d}, V={v} ({shape}), bf16:",
            "",
            "| head | method | N | time (ms) | peak memory (GB) | time / CE eager |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            if r["ms"] is None:
                lines.append(f"| {r['head']} | {r['method']} | {r['N']} | {r.get('error')} | | |")
                continue
            ratio = f"{r['ms'] / ce:.2f}x" if ce and r["N"] == n else ""
            lines.append(f"| {r['head']} | {r['method']} | {r['N']} | {r['ms']:.2f} | {r['peak_gb']:.2f} | {ratio} |")
        lines.append("")
    if trains:
        lines += ["Training check (Adam lr 1e-2 on one batch, fused head, loss per step):", ""]
        lines += [
            f"- {r['head']}: "
            + ", ".join(f"{x:.4f}" for x in r["losses"])
            + ("" if r["falls"] else " (did not fall)")
            for r in trains
        ]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for heads_benchmark.json and .md")
    parser.add_argument(
        "--only",
        choices=["check", "tune", "bench", "profile", "train"],
        action="append",
        help="run only these parts (repeatable); default: all",
    )
    parser.add_argument("--shapes", default="gpt2,qwen", help="comma-separated from " + ",".join(SHAPES))
    parser.add_argument(
        "--qwen-heads",
        default="euclidean,cosine,manhattan",
        help="heads timed at the Qwen-like vocabulary (all heads are timed at GPT-2 shape)",
    )
    parser.add_argument("--heads", help="comma-separated head labels to bench at GPT-2 shape (default: all)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile baselines")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("heads_benchmark: needs a CUDA GPU")
    import triton

    parts = args.only or ["check", "tune", "bench", "profile", "train"]
    meta = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    print(json.dumps(meta), flush=True)
    checks, benches, trains, tunes = [], [], [], []
    shapes = args.shapes.split(",")
    args.out.mkdir(parents=True, exist_ok=True)

    def save():
        (args.out / "heads_benchmark.json").write_text(
            json.dumps({"meta": meta, "check": checks, "tune": tunes, "bench": benches, "train": trains}, indent=1)
        )
        (args.out / "heads_benchmark.md").write_text(markdown(meta, checks, benches, trains))

    SAVE_HOOKS.append(save)
    all_heads = args.heads.split(",") if args.heads else [label for label, _, _ in head_cases()]
    if "check" in parts:
        run_check("gpt2", checks)
        save()
    if "tune" in parts:
        meta["chosen_configs"] = run_tune(tunes)
        save()
    if "bench" in parts and "gpt2" in shapes:
        run_bench("gpt2", all_heads, benches, compiled=not args.no_compile)
        save()
    if "profile" in parts:
        run_profile(args.out)
    if "train" in parts:
        run_train("gpt2", trains)
        save()
    if "bench" in parts and "qwen" in shapes:
        run_bench("qwen", args.qwen_heads.split(","), benches, compiled=not args.no_compile)
        save()
    print(markdown(meta, checks, benches, trains))


if __name__ == "__main__":
    main()
