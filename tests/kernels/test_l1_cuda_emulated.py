"""The CUDA L1 kernels' own source (harmonic/kernels/l1_cuda/l1_*.cu and l1_kernels.cuh, kernels and launchers)
compiled for the CPU with g++ against tests/kernels/l1_cuda_emulate/emulate.h (each block as 256 threads with a
barrier), checked against the reference definition for every L1-type distance: per-row losses from the forward
partials, dx and dW from the backward. The operands come from each distance's registry entry (kernel_operands), as
in training.

This catches indexing, tiling, split, chunk and tie-handling mistakes without a GPU; what it cannot see (timing,
the GPU's memory model, nvcc's code generation) the device check benchmarks/l1_cuda_check.py covers."""

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from harmonic.distances import get_distance, pairwise
from harmonic.kernels import l1_cuda, l1_heads

HERE = Path(__file__).parent / "l1_cuda_emulate"
F32, I32 = ctypes.c_float, ctypes.c_int


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ is not installed: the CUDA kernels cannot be host-compiled here")
    library = tmp_path_factory.mktemp("l1_emu") / "emu.so"
    sources = [str(path) for path in l1_cuda.SOURCES if path.suffix == ".cu"] + [str(HERE / "harness.cpp")]
    cmd = [compiler, "-std=c++20", "-O1", "-pthread", "-shared", "-fPIC", "-DL1_EMULATE", "-x", "c++", *sources,
           "-o", str(library)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(library))
    lib.emu_chunk_rows.argtypes = [I32, I32, I32, ctypes.c_long]
    return lib


def _ptr(t: torch.Tensor):
    return ctypes.c_void_p(t.data_ptr())


def _emulated(lib, a, b, aa, bb, y, kind, n_exp, eps, scale, p, alpha, smoothing, g_bytes, keep_sums, fused=True):
    """(per-row losses, dx, dW, daa, dbb) through the host-compiled launchers, with reduction 'sum' weights;
    keep_sums: the forward stores the pair sums and the backward reads them (else it recomputes them); fused: one
    sweep computes dx and dW (the kinds other than the sign kinds; else grad_x and grad_w)."""
    n, d = a.shape
    v = b.shape[0]
    bf16 = int(a.dtype == torch.bfloat16)
    vec = int(d % 8 == 0)  # torch's CPU allocations are 64-byte aligned
    y32 = y.to(torch.int32).contiguous()
    common = [_ptr(a), _ptr(b), _ptr(aa), _ptr(bb), _ptr(y32), n, v, d, kind, bf16, vec, F32(n_exp), F32(eps)]
    splits = I32(0)
    null = ctypes.c_void_p(0)
    consts = [F32(scale), F32(p), F32(alpha)]
    assert lib.emu_forward(*common, *consts, null, null, null, null, null, ctypes.byref(splits)) == 0
    m, s, zsum, zt = (torch.full((splits.value, n), float("nan")) for _ in range(4))  # poisoned: all written?
    sums = torch.full((lib.emu_kept_arrays(kind), n, lib.emu_padded_classes(v)), float("nan"))
    keep = _ptr(sums) if keep_sums else null
    assert lib.emu_forward(*common, *consts, _ptr(m), _ptr(s), _ptr(zsum), _ptr(zt), keep, ctypes.byref(splits)) == 0
    assert torch.isfinite(m).all() and torch.isfinite(s).all()
    top = m.max(0).values
    lse = top + (s * (m - top).exp()).sum(0).log()
    valid = y != -100
    per_row = torch.where(valid, lse - (1 - smoothing) * zt.sum(0) - smoothing / v * zsum.sum(0), 0.0)
    rows = lib.emu_chunk_rows(n, v, kind, g_bytes)
    g = torch.full((rows * lib.emu_coefficient_arrays(kind), lib.emu_padded_classes(v)), float("nan"))
    dx, dw, daa, dbb = torch.zeros(n, d), torch.zeros(v, d), torch.zeros(n), torch.zeros(v)
    gw = valid.float()
    assert (
        lib.emu_backward(*common, F32(scale), F32(smoothing), F32(p), F32(alpha), _ptr(lse), _ptr(gw), _ptr(g), rows,
                         _ptr(dx), _ptr(dw), _ptr(daa), _ptr(dbb), keep, int(fused)) == 0
    )  # fmt: skip
    return per_row, dx, dw, daa, dbb, splits.value, -(-n // rows)


def _reference(a, b, y, kind, ops, n_exp, eps, smoothing):
    """Per-row losses and the gradients of their sum with respect to the kernel's operands a, b, from
    harmonic.pairwise in fp32 (the distance each kind computes of its operands, see l1_heads.py)."""
    a = a.float().clone().requires_grad_()  # a copy: .float() of an fp32 tensor is the tensor itself
    b = b.float().clone().requires_grad_()
    name, params = {
        l1_heads.MANHATTAN: ("manhattan", {}),
        l1_heads.MINKOWSKI: ("minkowski", {"p": ops.p}),
        l1_heads.CHEBYSHEV: ("chebyshev", {}),
        l1_heads.SMOOTH: ("chebyshev_smooth", {"alpha": ops.alpha}),
        l1_heads.CANBERRA: ("canberra", {}),
        l1_heads.BRAYCURTIS: ("bray_curtis", {}),
        l1_heads.BRAYABS: ("bray_curtis_abs", {}),
    }[kind]
    d = pairwise(name, a, b, **params) * ops.scale
    per_row = F.cross_entropy(-n_exp * torch.log(d + eps), y, ignore_index=-100, label_smoothing=smoothing,
                              reduction="none")  # fmt: skip
    da, db = torch.autograd.grad(per_row.sum(), (a, b))
    return per_row.detach(), da, db


def _operands(name, params, x, w):
    """The kernel's inputs as training builds them (the registry's kernel_operands), detached."""
    dist = get_distance(name)
    ops = dist.kernel_operands(x, w, dist.resolve(dict(params)), None, False, x.dtype)
    assert ops.family == "l1"
    aa = ops.aa.detach().float() if ops.aa is not None else torch.zeros(x.shape[0])
    bb = ops.bb.detach().float() if ops.bb is not None else torch.zeros(w.shape[0])
    return ops.a.detach().contiguous(), ops.b.detach().contiguous(), aa, bb, l1_heads.KINDS[ops.kind], ops


# distance, params, dtype, (N, V, D), smoothing, G bytes (1: several row chunks, as small as G may get)
CASES = [
    ("manhattan", {}, torch.bfloat16, (77, 300, 100), 0.1, 2**30),
    ("manhattan", {}, torch.float32, (150, 200, 64), 0.0, 1),
    ("hamming_soft", {}, torch.float32, (40, 130, 50), 0.0, 2**30),
    ("bray_curtis_abs", {}, torch.bfloat16, (40, 140, 48), 0.05, 2**30),
    ("bray_curtis_abs", {}, torch.float32, (130, 20, 20), 0.0, 1),
    ("bray_curtis", {}, torch.bfloat16, (70, 150, 40), 0.05, 2**30),
    ("bray_curtis", {}, torch.float32, (130, 60, 20), 0.0, 1),
    ("chebyshev", {}, torch.bfloat16, (60, 140, 40), 0.05, 2**30),
    ("chebyshev", {}, torch.float32, (130, 50, 30), 0.0, 1),
    ("chebyshev_smooth", {"alpha": 10.0}, torch.bfloat16, (50, 140, 37), 0.05, 2**30),
    ("chebyshev_smooth", {"alpha": 3.0}, torch.float32, (130, 40, 20), 0.0, 1),
    ("minkowski", {"p": 3.0}, torch.bfloat16, (50, 140, 40), 0.05, 2**30),
    ("minkowski", {"p": 1.5}, torch.float32, (160, 130, 24), 0.0, 1),
    ("minkowski", {"p": 4.0}, torch.float32, (40, 70, 33), 0.0, 2**30),
    ("canberra", {}, torch.bfloat16, (50, 140, 40), 0.05, 2**30),
    ("canberra", {}, torch.float32, (130, 40, 21), 0.0, 1),
    # several feature blocks, the last one partial: the narrow fused tile's 64 (canberra, p = 1.5) and the wide 128
    ("canberra", {}, torch.bfloat16, (40, 50, 150), 0.0, 2**30),
    ("minkowski", {"p": 1.5}, torch.bfloat16, (40, 50, 132), 0.0, 2**30),
    ("chebyshev_smooth", {"alpha": 10.0}, torch.float32, (40, 50, 140), 0.0, 2**30),
]


SIGN_KINDS = ("manhattan", "hamming_soft", "bray_curtis_abs", "bray_curtis")  # their own grad_x / grad_w only
RUNS = (
    [(*case, False, True) for case in CASES]
    + [(*case, True, True) for case in CASES]  # the forward's values kept for the backward
    + [(*case, False, False) for case in CASES if case[0] not in SIGN_KINDS]  # grad_x and grad_w, not fused
)


@pytest.mark.parametrize("name,params,dtype,shape,smoothing,g_bytes,keep_sums,fused", RUNS, ids=str)
def test_emulated_kernels_match_the_reference(emu, name, params, dtype, shape, smoothing, g_bytes, keep_sums, fused):
    n, v, d = shape
    gen = torch.Generator().manual_seed(n + v + d)
    x = torch.randn(n, d, generator=gen).to(dtype)
    w = (0.5 * torch.randn(v, d, generator=gen)).to(dtype)
    w[3] = x[2]  # a point on a centre: every feature ties
    w[5, : d // 2] = x[7, : d // 2]
    x[1, 0], w[0, 0] = -0.0, 0.0  # signed zeros tie too
    x[4].zero_()
    w[6].zero_()  # the 0/0 denominators (bray_curtis_abs, canberra)
    w[8] = -x[9]  # bray_curtis: sum |x + w| = 0
    x[10, :3] = 1.0
    w[11, :3] = -1.0  # chebyshev: tied maxima (|u| = 2 at three features)
    x[10, 3:] = 0.0
    w[11, 3:] = 0.0
    y = torch.randint(0, v, (n,), generator=gen)
    y[::9] = -100
    y[10] = 11
    a, b, aa, bb, kind, ops = _operands(name, params, x, w)
    assert emu.emu_kept_arrays(kind) == l1_cuda.kept_arrays(kind) == (2 if name == "bray_curtis" else 1)
    n_exp, eps = 3.0, 1e-8
    per_row, dx, dw, daa, dbb, splits, chunks = _emulated(
        emu, a, b, aa, bb, y, kind, n_exp, eps, ops.scale, ops.p, ops.alpha, smoothing, g_bytes, keep_sums, fused
    )
    assert (chunks > 1) == (g_bytes == 1) and splits >= 1  # several row chunks where G may hold 128 rows only
    want_rows, want_dx, want_dw = _reference(a, b, y, kind, ops, n_exp, eps, smoothing)
    torch.testing.assert_close(per_row, want_rows, rtol=1e-5, atol=1e-5)
    if kind == l1_heads.BRAYABS:  # the denominator's gradient reaches a and b through aa = sum |a|, bb = sum |b|
        dx = dx + daa[:, None] * a.float().sign()
        dw = dw + dbb[:, None] * b.float().sign()
    for got, want in ((dx, want_dx), (dw, want_dw)):
        assert float((got - want).norm() / want.norm()) <= 1e-5


@pytest.mark.parametrize("fused", [True, False])
def test_smooth_pairs_without_gradient_stay_finite(emu, fused):
    """chebyshev_smooth with alpha |u| far above 128 (exp2 overflows): a pair without gradient (an ignored row, the
    padding rows of a tile) must add exactly 0, not 0 * inf = NaN, to dW and dx."""
    gen = torch.Generator().manual_seed(3)
    x, w = 20 * torch.randn(70, 24, generator=gen), 20 * torch.randn(40, 24, generator=gen)
    y = torch.randint(0, 40, (70,), generator=gen)
    y[::3] = -100
    a, b, aa, bb, kind, ops = _operands("chebyshev_smooth", {"alpha": 10.0}, x, w)
    per_row, dx, dw, *_ = _emulated(emu, a, b, aa, bb, y, kind, 3.0, 1e-8, ops.scale, ops.p, ops.alpha, 0.0, 2**30,
                                    False, fused)  # fmt: skip
    _, want_dx, want_dw = _reference(a, b, y, kind, ops, 3.0, 1e-8, 0.0)
    assert torch.isfinite(dx).all() and torch.isfinite(dw).all()
    for got, want in ((dx, want_dx), (dw, want_dw)):  # exponents near alpha2 d ~ 900: fp32 rounds them to ~6e-5
        assert float((got - want).norm() / want.norm()) <= 1e-4


def _fallbacks_and_grads(emu, fallback_count, name, params, x, w, y, keep_sums):
    """Runs the emulated kernels on these inputs (n = 3, eps = 1e-8), checks the per-row losses against the reference,
    and returns how many tiles fallback_count (an emulator counter) saw meanwhile, (dx, dW) and the reference's."""
    a, b, aa, bb, kind, ops = _operands(name, params, x, w)
    before = fallback_count()
    per_row, dx, dw, *_ = _emulated(emu, a, b, aa, bb, y, kind, 3.0, 1e-8, ops.scale, ops.p, ops.alpha, 0.0, 2**30,
                                    keep_sums)  # fmt: skip
    fallbacks = fallback_count() - before
    want_rows, want_dx, want_dw = _reference(a, b, y, kind, ops, 3.0, 1e-8, 0.0)
    torch.testing.assert_close(per_row, want_rows, rtol=1e-5, atol=1e-5)
    return fallbacks, (dx, dw), (want_dx, want_dw)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("keep_sums", [False, True])
def test_smooth_tiles_out_of_the_factor_range_take_two_sweeps(emu, dtype, keep_sums):
    """chebyshev_smooth's one sweep multiplies factors 2^(+-alpha2 v - o) of each operand, offset per row and per
    centre by o = ceil(alpha2 max |v|): a row with one large feature (as a language model's hidden states grow) is in
    its range, but a tile where both the rows and the centres reach max |v| > 3.4 (alpha = 10) must take the two
    exact sweeps, in the forward and (recomputing) in the coefficients; either way the results are the
    reference's."""
    gen = torch.Generator().manual_seed(5)
    x, w = 0.5 * torch.randn(260, 20, generator=gen), 0.5 * torch.randn(300, 20, generator=gen)
    # row 140 (the second of three 128-row tiles) has a feature at -13 (alpha2 |x| = 188, beyond fp32's exponent
    # range without the offsets), and centre 7 (the first of three 128-centre tiles) ties with it but at that
    # feature, -12.9375: that pair's terms all lie near 2^-(o_r + o_c) = 2^-375, which only the two sweeps hold
    w[7] = x[140]
    x[140, 5], w[7, 5] = -13.0, -12.9375
    x, w = x.to(dtype), w.to(dtype)
    y = torch.randint(0, 300, (260,), generator=gen)
    y[140] = 7
    fallbacks, grads, want_grads = _fallbacks_and_grads(emu, emu.emu_smooth_fallbacks, "chebyshev_smooth",
                                                        {"alpha": 10.0}, x, w, y, keep_sums)  # fmt: skip
    # of the 3 x 3 tiles only (row tile 1, centre tile 0), in the forward (and the coefficients)
    assert fallbacks == (1 if keep_sums else 2)
    for got, want in zip(grads, want_grads):
        assert float((got - want).norm() / want.norm()) <= 1e-5


# Shared memory per block of the fused sweep (l1_kernels.cuh's FusedSmem): canberra's narrow tile (8 x 4 per thread,
# one coefficient array) and chebyshev_smooth's wide one (8 x 8, two arrays).
FUSED_SMEM_BYTES = {"canberra": 88 * 1024, "chebyshev_smooth": 176 * 1024}


@pytest.mark.parametrize("name", sorted(FUSED_SMEM_BYTES))
def test_fused_sweep_runs_where_its_shared_memory_fits(emu, name):
    """The fused dx / dW sweep takes 88 KB (canberra's narrow tile) to 176 KB (chebyshev_smooth's wide tile and two
    coefficient arrays) of shared memory per block: on a device that allows it (an H100's 227 KB; canberra also on
    the 99 KB of sm_86 / sm_89) it runs; with less the launcher falls back to grad_x and grad_w, with the same
    results."""
    gen = torch.Generator().manual_seed(4)
    x, w = torch.randn(70, 24, generator=gen), torch.randn(40, 24, generator=gen)
    y = torch.randint(0, 40, (70,), generator=gen)
    params = {"alpha": 3.0} if name == "chebyshev_smooth" else {}
    a, b, aa, bb, kind, ops = _operands(name, params, x, w)
    _, want_dx, want_dw = _reference(a, b, y, kind, ops, 3.0, 1e-8, 0.0)
    need = FUSED_SMEM_BYTES[name]
    try:
        for smem, fused_runs in ((227 * 1024, True), (need, True), (need - 1024, False)):
            emu.emu_set_smem_per_block(smem)
            before = emu.emu_smem_launches()
            _, dx, dw, *_ = _emulated(emu, a, b, aa, bb, y, kind, 3.0, 1e-8, ops.scale, ops.p, ops.alpha, 0.0, 2**30,
                                      False, True)  # fmt: skip
            assert (emu.emu_smem_launches() > before) == fused_runs, smem
            for got, want in ((dx, want_dx), (dw, want_dw)):
                assert float((got - want).norm() / want.norm()) <= 1e-5
    finally:
        emu.emu_set_smem_per_block(227 * 1024)


def _fma_function(emu, which, values):
    out = torch.empty_like(values)
    emu.emu_fma_functions(which, _ptr(values), _ptr(out), values.numel())
    return out.double()


def test_fma_pipe_rcp_and_exp2_are_as_accurate_as_the_special_function_unit(emu):
    """fma_rcp and fma_ex2 (canberra's and chebyshev_smooth's forward compute a share of their reciprocals and
    exponentials on the FMA pipe) stay within 1.4 x 2^-24 of the exact value, relative, over their documented ranges
    (measured: 1.28 and 1.34): every fp32 of [1, 2), every multiple of 2^-23 in (-1, 0], and values spread over
    the whole range."""
    mantissas = torch.arange(2**23, dtype=torch.int32)
    one_two = (mantissas + 0x3F800000).view(torch.float32)
    spread = torch.logspace(-37.5, 37.5, 200_001, dtype=torch.float64).float()
    for values in (one_two, spread, torch.tensor([1.1754944e-38, 2.0**125])):
        got = _fma_function(emu, 0, values)
        rel = (got * values.double() - 1).abs()
        assert float(rel.max()) <= 1.4 * 2**-24, float(rel.max()) / 2**-24
    for values in (-one_two + 1.0, torch.linspace(-125.0, 127.0, 1_000_001), torch.tensor([0.0, -125.0, 127.0])):
        got = _fma_function(emu, 1, values)
        rel = (got / torch.exp2(values.double()) - 1).abs()
        assert float(rel.max()) <= 1.4 * 2**-24, float(rel.max()) / 2**-24
    below = torch.tensor([-126.0, -150.0, -float("inf")])
    assert torch.equal(_fma_function(emu, 1, below), torch.full((3,), 2.0**-125, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("keep_sums", [False, True])
def test_canberra_tiles_out_of_the_pair_range_take_one_reciprocal_per_feature(emu, dtype, keep_sums):
    """canberra's forward adds two features' terms over one reciprocal of s_1 s_2 (s = |x_k| + |w_k|), which needs
    every s of a tile's pairs in [2^-40, 2^40]. A tile holding a row and a centre of values near 1e-22 (s_1 s_2
    underflows), and the tiles of a centre with two features at 1e20 (it overflows) must take one reciprocal per
    feature, in the forward and (recomputing) in the coefficients; the other tiles take the pairs, and either way
    the results are the reference's. D is odd: the last feature of each pair sweep is added alone."""
    gen = torch.Generator().manual_seed(7)
    x, w = torch.randn(260, 21, generator=gen), 0.5 * torch.randn(300, 21, generator=gen)
    x[140] *= 1e-22  # row tile 1 ...
    w[7] = 0.5 * x[140]  # ... with centre tile 0: the tile's pair (140, 7) has every s near 1e-22
    w[290, 2:4] = 1e20  # centre tile 2: beyond 2^39, out of range with every row tile
    x, w = x.to(dtype), w.to(dtype)
    y = torch.randint(0, 300, (260,), generator=gen)
    y[140], y[0] = 7, 290
    _, _, aa, bb, _, _ = _operands("canberra", {}, x, w)
    assert float(bb[290]) == -1.0 and 0 < float(aa[140]) < 2**-40
    fallbacks, grads, want_grads = _fallbacks_and_grads(emu, emu.emu_canberra_fallbacks, "canberra", {}, x, w, y,
                                                        keep_sums)  # fmt: skip
    # of the 3 x 3 tiles: (row tile 1, centre tile 0) and the three of centre tile 2, in the forward (and coefficients)
    assert fallbacks == (4 if keep_sums else 8)
    # the fused backward's own range (l1_kernels.cuh, CANBERRA_SCALE): its sign steps are exact for |x u| >= 2^-81,
    # which the pair (140, 7) is not (|x u| near 1e-44): leave its row of dx and its centre of dW out
    keep = (torch.arange(260) != 140, torch.arange(300) != 7)
    for got, want, rows in zip(grads, want_grads, keep):
        assert float((got[rows] - want[rows]).norm() / want[rows].norm()) <= 1e-5
