"""CUDA C++ kernels for every elementwise ("L1-type") head kind: l1_kernels.cuh (kernels, no torch headers), one
l1_*.cu per kernel family (built in parallel), l1_heads.cu (dispatch) and l1_binding.cpp (PyTorch side) beside this
file, built on first use with torch.utils.cpp_extension (nvcc -O3 for the GPU's own architecture).

They compute what harmonic/kernels/l1_heads.py's Triton kernels compute for all seven kinds (manhattan,
hamming_soft, minkowski, chebyshev, chebyshev_smooth, canberra, bray_curtis, bray_curtis_abs), with explicit
register tiles in both directions (l1_kernels.cuh's header says how). l1_heads.l1_head_loss picks them:

    HARMONIC_L1_CUDA=auto (default)  on CUDA tensors when the extension builds; otherwise the Triton kernels, with
                                     one warning saying why (checked on an H200 by benchmarks/l1_cuda_check.sh:
                                     benchmarks/results/l1-cuda-h200/, docs/performance.md)
    HARMONIC_L1_CUDA=0               never (the Triton kernels)
    HARMONIC_L1_CUDA=1               always on CUDA tensors; a build failure is an error

HARMONIC_L1_CUDA_BUILD: build folder (default ~/.cache/harmonic/l1_cuda/<arch>); HARMONIC_L1_CUDA_G_BYTES: memory
for the backward's coefficient matrix (rows x V, fp32), walked over in row chunks (default 1 GiB);
HARMONIC_L1_CUDA_VERBOSE=1: print the build (with nvcc's register and spill report, -Xptxas -v).
HARMONIC_L1_CUDA_STORE: whether the forward keeps its values per pair (N x V fp32: the sum, chebyshev's maximum,
chebyshev_smooth's alpha-scaled distance; bray_curtis: both of its sums, twice that) for the backward instead of
the backward recomputing them (a sweep over N x V x D, with a special function per triple for minkowski
p != 1, 2, 3, chebyshev_smooth and canberra), at that much memory between forward and backward.
auto (default): keep them when they take at most HARMONIC_L1_CUDA_STORE_MAX_BYTES (default 4 GiB: a GPT-2 step of
16 x 1024 tokens needs 3.3 GB, 6.6 GB for bray_curtis); 1: always; 0: never. Both modes compute the same values in
the same order.
HARMONIC_L1_CUDA_FUSED: 1 (default) one backward sweep computes both dx and dW for the kinds other than manhattan,
hamming_soft and the two bray_curtis kinds (their per-triple term is computed once instead of twice; dW is added
with atomics); 0: one sweep each, as the sign kinds always do.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from harmonic.kernels._loss import finish_rows, reduce_rows, row_weights
from harmonic.kernels.l1_heads import BRAYABS, BRAYCURTIS, denominator_grads
from harmonic.kernels.l1_heads import KINDS as L1_KINDS

HERE = Path(__file__).parent
FAMILIES = ("l1_sign.cu", "l1_braycurtis.cu", "l1_maximum.cu", "l1_power.cu")  # one nvcc job each
SOURCES = (HERE / "l1_binding.cpp", HERE / "l1_heads.cu", *(HERE / name for name in FAMILIES))
HEADERS = (HERE / "l1_heads.h", HERE / "l1_kernels.cuh")
KINDS = tuple(L1_KINDS.values())
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_STATUS: dict = {}  # "ok": bool, "reason": str, "module": the extension, "warned": bool


def mode() -> str:
    """HARMONIC_L1_CUDA as one of auto / 0 / 1 (read on every call, so a process can switch)."""
    value = os.environ.get("HARMONIC_L1_CUDA", "auto").strip().lower()
    aliases = {"auto": "auto", "0": "0", "off": "0", "false": "0", "1": "1", "on": "1", "true": "1"}
    if value not in aliases:
        raise ValueError(f"HARMONIC_L1_CUDA must be auto, 0 or 1 (got {value!r})")
    return aliases[value]


def _no_cuda_reason() -> str | None:
    """Why the extension cannot apply on this machine before trying to build it, or None."""
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    if torch.version.cuda is None:
        return "this torch build has no CUDA"
    return None


def _build_flags(verbose: bool) -> list[str]:
    major, minor = torch.cuda.get_device_capability()
    arch = f"{major}{minor}"
    flags = ["-O3", f"-gencode=arch=compute_{arch},code=sm_{arch}", "-lineinfo"]
    return flags + (["-Xptxas", "-v"] if verbose else [])


def _build():
    """Compile (or load the cached build of) the sources for the current GPU (ninja: one nvcc job per file)."""
    from torch.utils.cpp_extension import load

    verbose = os.environ.get("HARMONIC_L1_CUDA_VERBOSE", "0") == "1"
    major, minor = torch.cuda.get_device_capability()
    default = Path.home() / ".cache" / "harmonic" / "l1_cuda" / f"sm_{major}{minor}"
    folder = Path(os.environ.get("HARMONIC_L1_CUDA_BUILD", default))
    folder.mkdir(parents=True, exist_ok=True)
    return load(
        name="harmonic_l1_cuda",
        sources=[str(path) for path in SOURCES],
        extra_cflags=["-O3"],
        extra_cuda_cflags=_build_flags(verbose),
        build_directory=str(folder),
        verbose=verbose,
    )


def l1_cuda_available() -> tuple[bool, str]:
    """(True, "") when the CUDA kernels are built and loadable here, else (False, the reason). Builds once per
    process on the first call on a CUDA machine (a minute or two; later processes load the cached build)."""
    if "ok" not in _STATUS:
        reason = _no_cuda_reason()
        if reason is None:
            try:
                _STATUS["module"] = _build()
            except Exception as error:  # noqa: BLE001 - any build failure means: use the Triton kernels
                reason = f"the extension did not build: {type(error).__name__}: {str(error).strip()[-600:]}"
        _STATUS["ok"], _STATUS["reason"] = reason is None, reason or ""
    return _STATUS["ok"], _STATUS["reason"]


def wanted(kind: int, a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether l1_heads.l1_head_loss should take these kernels for this call (see the module docstring)."""
    choice = mode()
    covered = kind in KINDS and a.is_cuda and b.is_cuda and a.dtype in DTYPES and b.dtype in DTYPES
    covered = covered and min(a.shape[0], b.shape[0], a.shape[1]) > 0  # empty grids: leave them to Triton
    if choice == "0" or not covered:
        return False
    ok, reason = l1_cuda_available()
    if not ok and choice == "1":
        raise RuntimeError(f"HARMONIC_L1_CUDA=1 but the CUDA L1 kernels are unavailable: {reason}")
    if not ok and not _STATUS.get("warned"):
        _STATUS["warned"] = True
        warnings.warn(f"harmonic: CUDA L1 kernels unavailable, using the Triton kernels ({reason})", stacklevel=3)
    return ok


def _operands(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both bf16 when both are (the fast 16-bit path), else both fp32 (exact for bf16 and fp16 values)."""
    if a.dtype == b.dtype == torch.bfloat16:
        return a.contiguous(), b.contiguous()
    return a.float().contiguous(), b.float().contiguous()


def _g_bytes() -> int:
    return int(os.environ.get("HARMONIC_L1_CUDA_G_BYTES", str(2**30)))


def kept_arrays(kind: int) -> int:
    """N x V arrays the forward keeps for this kind's backward (as l1_heads.h's kept_arrays): one value per pair,
    both of bray_curtis' sums."""
    if kind not in KINDS:
        raise ValueError(f"unknown L1 kernel kind {kind}")
    return 2 if kind == BRAYCURTIS else 1


def fused() -> bool:
    """HARMONIC_L1_CUDA_FUSED (default 1): whether one sweep computes dx and dW for the kinds other than the sign
    kinds (0: grad_x and grad_w, one sweep each; for comparison)."""
    value = os.environ.get("HARMONIC_L1_CUDA_FUSED", "1").strip().lower()
    if value not in ("0", "1"):
        raise ValueError(f"HARMONIC_L1_CUDA_FUSED must be 0 or 1 (got {value!r})")
    return value == "1"


def keep_sums(kind: int, rows: int, classes: int) -> bool:
    """Whether this forward keeps its sums (HARMONIC_L1_CUDA_STORE, see the module docstring)."""
    value = os.environ.get("HARMONIC_L1_CUDA_STORE", "auto").strip().lower()
    if value not in ("auto", "0", "1"):
        raise ValueError(f"HARMONIC_L1_CUDA_STORE must be auto, 0 or 1 (got {value!r})")
    if value == "0":
        return False
    limit = int(os.environ.get("HARMONIC_L1_CUDA_STORE_MAX_BYTES", str(4 * 2**30)))
    padded = -(-classes // 128) * 128  # the kernels' padded_classes
    return value == "1" or 4 * kept_arrays(kind) * rows * padded <= limit


class L1CudaHeadLoss(torch.autograd.Function):
    """As l1_heads.L1HeadLoss (same arguments, same result) for every kind."""

    @staticmethod
    def forward(ctx, a, b, aa, bb, y, kind, n_exp, eps, p, alpha, scale, smoothing, ignore_index, reduction):
        ext = _STATUS["module"]
        dtype_a, dtype_b = a.dtype, b.dtype
        a, b = _operands(a, b)
        n, classes = a.shape[0], b.shape[0]
        aa, bb = aa.float().contiguous(), bb.float().contiguous()
        y32 = y.to(torch.int32).contiguous()
        keep = keep_sums(kind, n, classes)
        stats = ext.forward(a, b, aa, bb, y32, kind, n_exp, eps, scale, p, alpha, keep)
        sums = stats[4] if len(stats) > 4 else a.new_empty(0, dtype=torch.float32)
        lse, per_row = torch.empty(n, device=a.device), torch.empty(n, device=a.device)
        finish_rows(stats[:4], y, lse, per_row, 0, n, classes, smoothing, ignore_index)
        valid = y != ignore_index
        count = valid.sum()
        ctx.save_for_backward(a, b, aa, bb, y32, lse, valid, count, sums)
        ctx.args = (kind, n_exp, eps, p, alpha, scale, smoothing, reduction, dtype_a, dtype_b)
        return reduce_rows(per_row, count, reduction)

    @staticmethod
    def backward(ctx, grad_out):
        a, b, aa, bb, y32, lse, valid, count, sums = ctx.saved_tensors
        kind, n_exp, eps, p, alpha, scale, smoothing, reduction, dtype_a, dtype_b = ctx.args
        g = row_weights(grad_out, valid, count, reduction)
        need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        da, db, daa, dbb = _STATUS["module"].backward(
            a,
            b,
            aa,
            bb,
            y32,
            lse,
            g,
            kind,
            n_exp,
            eps,
            scale,
            p,
            alpha,
            smoothing,
            _g_bytes(),
            need_a,
            need_b,
            sums,
            fused(),
        )
        da, db = denominator_grads(kind, a, b, da if need_a else None, db if need_b else None, daa, dbb)
        return (
            da.to(dtype_a) if need_a else None,
            db.to(dtype_b) if need_b else None,
            daa if ctx.needs_input_grad[2] and kind != BRAYABS else None,
            dbb if ctx.needs_input_grad[3] and kind != BRAYABS else None,
            *([None] * 10),
        )
