"""The CUDA L1 kernels' own source (harmonic/kernels/l1_cuda/l1_heads.cu, kernels and launchers) compiled for the
CPU with g++ against tests/kernels/l1_cuda_emulate/emulate.h (each block as 256 threads with a barrier), checked
against the reference definition: per-row losses from the forward partials, dx and dW from the backward.

This catches indexing, tiling, split, chunk and tie-handling mistakes without a GPU; what it cannot see (timing,
the GPU's memory model, nvcc's code generation) the device check benchmarks/l1_cuda_check.py covers."""

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harmonic.distances import pairwise
from harmonic.kernels import l1_cuda, l1_heads

HERE = Path(__file__).parent / "l1_cuda_emulate"
F32, I32 = ctypes.c_float, ctypes.c_int


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ is not installed: the CUDA kernels cannot be host-compiled here")
    library = tmp_path_factory.mktemp("l1_emu") / "emu.so"
    cmd = [compiler, "-std=c++20", "-O1", "-pthread", "-shared", "-fPIC", "-DL1_EMULATE", "-x", "c++",
           str(l1_cuda.HERE / "l1_heads.cu"), "-x", "c++", str(HERE / "harness.cpp"), "-o", str(library)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(library))
    lib.emu_chunk_rows.argtypes = [I32, I32, ctypes.c_long]
    return lib


def _ptr(t: torch.Tensor):
    return ctypes.c_void_p(t.data_ptr())


def _emulated(lib, a, b, aa, bb, y, kind, n_exp, eps, scale, smoothing, g_bytes, keep_sums):
    """(per-row losses, dx, dW, daa, dbb) through the host-compiled launchers, with reduction 'sum' weights;
    keep_sums: the forward stores the pair sums and the backward reads them (else it recomputes them)."""
    n, d = a.shape
    v = b.shape[0]
    bf16 = int(a.dtype == torch.bfloat16)
    vec = int(d % 8 == 0)  # torch's CPU allocations are 64-byte aligned
    y32 = y.to(torch.int32).contiguous()
    common = [_ptr(a), _ptr(b), _ptr(aa), _ptr(bb), _ptr(y32), n, v, d, kind, bf16, vec, F32(n_exp), F32(eps)]
    splits = I32(0)
    null = ctypes.c_void_p(0)
    assert lib.emu_forward(*common, F32(scale), null, null, null, null, null, ctypes.byref(splits)) == 0
    m, s, zsum, zt = (torch.full((splits.value, n), float("nan")) for _ in range(4))  # poisoned: all written?
    sums = torch.full((n, lib.emu_padded_classes(v)), float("nan"))
    keep = _ptr(sums) if keep_sums else null
    assert (
        lib.emu_forward(*common, F32(scale), _ptr(m), _ptr(s), _ptr(zsum), _ptr(zt), keep, ctypes.byref(splits)) == 0
    )
    assert torch.isfinite(m).all() and torch.isfinite(s).all()
    top = m.max(0).values
    lse = top + (s * (m - top).exp()).sum(0).log()
    valid = y != -100
    per_row = torch.where(valid, lse - (1 - smoothing) * zt.sum(0) - smoothing / v * zsum.sum(0), 0.0)
    rows = lib.emu_chunk_rows(n, v, g_bytes)
    g = torch.full((rows, lib.emu_padded_classes(v)), float("nan"))
    dx, dw, daa, dbb = torch.zeros(n, d), torch.zeros(v, d), torch.zeros(n), torch.zeros(v)
    gw = valid.float()
    assert (
        lib.emu_backward(*common, F32(scale), F32(smoothing), _ptr(lse), _ptr(gw), _ptr(g), rows, _ptr(dx),
                         _ptr(dw), _ptr(daa), _ptr(dbb), keep) == 0
    )  # fmt: skip
    return per_row, dx, dw, daa, dbb, splits.value, -(-n // rows)


def _reference(a, b, y, kind, n_exp, eps, scale, smoothing):
    """Per-row losses and the gradients of their sum, from harmonic.pairwise in fp32."""
    x = a.float().clone().requires_grad_()  # a copy: .float() of an fp32 tensor is the tensor itself
    w = b.float().clone().requires_grad_()
    name = "manhattan" if kind == l1_heads.MANHATTAN else "bray_curtis_abs"
    d = pairwise(name, x, w) * scale
    per_row = F.cross_entropy(-n_exp * torch.log(d + eps), y, ignore_index=-100, label_smoothing=smoothing,
                              reduction="none")  # fmt: skip
    dx, dw = torch.autograd.grad(per_row.sum(), (x, w))
    return per_row.detach(), dx, dw


CASES = [  # kind, dtype, (N, V, D), scale, smoothing, G bytes (small: several row chunks)
    (l1_heads.MANHATTAN, torch.bfloat16, (77, 300, 100), 1.0, 0.1, 2**30),
    (l1_heads.MANHATTAN, torch.float32, (150, 200, 64), 1 / 64, 0.0, 1),
    (l1_heads.BRAYABS, torch.bfloat16, (40, 140, 48), 1.0, 0.05, 2**30),
    (l1_heads.BRAYABS, torch.float32, (130, 20, 20), 1.0, 0.0, 1),
]


@pytest.mark.parametrize("keep_sums", [False, True])
@pytest.mark.parametrize("kind,dtype,shape,scale,smoothing,g_bytes", CASES, ids=str)
def test_emulated_kernels_match_the_reference(emu, kind, dtype, shape, scale, smoothing, g_bytes, keep_sums):
    n, v, d = shape
    gen = torch.Generator().manual_seed(n + v + d)
    a = torch.randn(n, d, generator=gen).to(dtype)
    b = (0.5 * torch.randn(v, d, generator=gen)).to(dtype)
    b[3] = a[2]  # a point on a centre: every feature ties
    b[5, : d // 2] = a[7, : d // 2]
    a[1, 0], b[0, 0] = -0.0, 0.0  # signed zeros tie too
    if kind == l1_heads.BRAYABS:
        a[4].zero_()
        b[6].zero_()  # the 0/0 denominator
    y = torch.randint(0, v, (n,), generator=gen)
    y[::9] = -100
    aa = a.float().abs().sum(-1) if kind == l1_heads.BRAYABS else torch.zeros(n)
    bb = b.float().abs().sum(-1) if kind == l1_heads.BRAYABS else torch.zeros(v)
    n_exp, eps = 3.0, 1e-8
    per_row, dx, dw, daa, dbb, splits, chunks = _emulated(
        emu, a, b, aa, bb, y, kind, n_exp, eps, scale, smoothing, g_bytes, keep_sums
    )
    assert (chunks > 1) == (g_bytes == 1) and splits >= 1  # several row chunks where G may hold 128 rows only
    want_rows, want_dx, want_dw = _reference(a, b, y, kind, n_exp, eps, scale, smoothing)
    torch.testing.assert_close(per_row, want_rows, rtol=1e-5, atol=1e-5)
    if kind == l1_heads.BRAYABS:  # the denominator's gradient reaches x and w through aa = sum |x|, bb = sum |w|
        dx = dx + daa[:, None] * a.float().sign()
        dw = dw + dbb[:, None] * b.float().sign()
    for got, want in ((dx, want_dx), (dw, want_dw)):
        assert float((got - want).norm() / want.norm()) <= 1e-5
