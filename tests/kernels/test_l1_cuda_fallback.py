"""The CUDA C++ L1 kernels (harmonic/kernels/l1_cuda) are optional: without a GPU or a compiler the Triton kernels
run, with a clear reason (and one warning where a CUDA call wanted them). Their GPU correctness is checked on the
device by benchmarks/l1_cuda_check.py; here only the selection and the fallback path are tested."""

import types
import warnings

import pytest
import torch

from harmonic import kernels
from harmonic.kernels import l1_cuda, l1_heads


@pytest.fixture
def fresh(monkeypatch):
    """A clean build status and the auto selection mode for each test."""
    monkeypatch.setattr(l1_cuda, "_STATUS", {})
    monkeypatch.setenv("HARMONIC_L1_CUDA", "auto")
    return l1_cuda


def test_default_is_auto_the_cuda_kernels_where_they_build(fresh, monkeypatch):
    """Unset means auto: a CUDA call builds and takes the CUDA kernels; CPU tensors never try to build."""
    monkeypatch.delenv("HARMONIC_L1_CUDA")
    assert fresh.mode() == "auto"
    monkeypatch.setattr(fresh, "_no_cuda_reason", lambda: None)
    monkeypatch.setattr(fresh, "_build", lambda: object())
    cpu = torch.zeros(2, 3)
    assert not fresh.wanted(l1_heads.MANHATTAN, cpu, cpu)
    assert "ok" not in fresh._STATUS
    assert fresh.wanted(l1_heads.MANHATTAN, _cuda_like(), _cuda_like())


def _cuda_like(dtype=torch.bfloat16):
    """Stands in for a CUDA tensor where only the selection logic looks at it."""
    return types.SimpleNamespace(is_cuda=True, dtype=dtype, shape=(2, 3))


def _failing_build():
    raise RuntimeError("nvcc: command not found")


def test_no_cuda_gives_a_reason_without_building(fresh, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(fresh, "_build", lambda: pytest.fail("must not build without CUDA"))
    ok, reason = fresh.l1_cuda_available()
    assert not ok and "no CUDA device" in reason


def test_build_failure_warns_once_names_the_error_and_falls_back(fresh, monkeypatch):
    monkeypatch.setattr(fresh, "_no_cuda_reason", lambda: None)
    monkeypatch.setattr(fresh, "_build", _failing_build)
    with pytest.warns(UserWarning, match="CUDA L1 kernels unavailable.*nvcc: command not found"):
        assert not fresh.wanted(l1_heads.MANHATTAN, _cuda_like(), _cuda_like())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call must not warn again
        assert not fresh.wanted(l1_heads.BRAYABS, _cuda_like(), _cuda_like())
    assert fresh.l1_cuda_available() == (False, fresh._STATUS["reason"])


def test_forced_mode_raises_on_build_failure(fresh, monkeypatch):
    monkeypatch.setenv("HARMONIC_L1_CUDA", "1")
    monkeypatch.setattr(fresh, "_no_cuda_reason", lambda: None)
    monkeypatch.setattr(fresh, "_build", _failing_build)
    with pytest.raises(RuntimeError, match="HARMONIC_L1_CUDA=1.*nvcc: command not found"):
        fresh.wanted(l1_heads.MANHATTAN, _cuda_like(), _cuda_like())


def test_selection_without_building(fresh, monkeypatch):
    """Off, CPU tensors, dtypes the CUDA kernels do not cover: no build is tried; a bad setting names the variable."""
    monkeypatch.setattr(fresh, "l1_cuda_available", lambda: pytest.fail("must not try to build"))
    assert not fresh.wanted(l1_heads.CHEBYSHEV, _cuda_like(torch.float64), _cuda_like(torch.float64))
    cpu = torch.zeros(2, 3)
    assert not fresh.wanted(l1_heads.MANHATTAN, cpu, cpu)
    monkeypatch.setenv("HARMONIC_L1_CUDA", "off")
    assert not fresh.wanted(l1_heads.MANHATTAN, _cuda_like(), _cuda_like())
    monkeypatch.setenv("HARMONIC_L1_CUDA", "sometimes")
    with pytest.raises(ValueError, match="HARMONIC_L1_CUDA"):
        fresh.wanted(l1_heads.MANHATTAN, _cuda_like(), _cuda_like())


def test_selected_when_built(fresh, monkeypatch):
    monkeypatch.setattr(fresh, "_no_cuda_reason", lambda: None)
    monkeypatch.setattr(fresh, "_build", lambda: object())
    assert fresh.wanted(l1_heads.BRAYABS, _cuda_like(torch.float32), _cuda_like(torch.float32))
    assert fresh.l1_cuda_available() == (True, "")


@pytest.mark.parametrize("distance", ["manhattan", "hamming_soft", "bray_curtis_abs", "bray_curtis", "chebyshev"])
def test_fallback_path_matches_the_reference_on_cpu(fresh, monkeypatch, distance):
    """Through the hook in l1_heads on the CPU (Triton interpreter), never the CUDA Function."""
    monkeypatch.setattr(fresh.L1CudaHeadLoss, "apply", lambda *a: pytest.fail("CUDA kernels on the CPU"))
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(9, 12, generator=gen).requires_grad_()
    w = torch.randn(21, 12, generator=gen).requires_grad_()
    w.data[4] = x.data[2]  # a point on a centre: every feature ties, sign(0) = 0
    y = torch.randint(0, 21, (9,), generator=gen)
    y[1] = -100
    args = dict(distance=distance, n=2.0, eps=1e-8, label_smoothing=0.05)
    results = []
    for fn in (kernels.fused_harmonic_loss, kernels.reference_harmonic_loss):
        loss = fn(x, w, y, **args)
        results.append((loss.detach(), torch.autograd.grad(loss, (x, w))))
    (fused, fused_grads), (ref, ref_grads) = results
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-6)
    for got, want in zip(fused_grads, ref_grads):
        assert float((got - want).norm() / want.norm()) <= 1e-4


def test_kind_codes_match_the_triton_module():
    """l1_heads.h hard-codes the kind codes of l1_heads.py; the sources ship with the package; every kind is served."""
    assert all(path.is_file() for path in (*l1_cuda.SOURCES, *l1_cuda.HEADERS))
    text = (l1_cuda.HERE / "l1_heads.h").read_text()
    for name, code in (("MANHATTAN", l1_heads.MANHATTAN), ("MINKOWSKI", l1_heads.MINKOWSKI),
                       ("CHEBYSHEV", l1_heads.CHEBYSHEV), ("SMOOTH", l1_heads.SMOOTH), ("CANBERRA", l1_heads.CANBERRA),
                       ("BRAYCURTIS", l1_heads.BRAYCURTIS), ("BRAYABS", l1_heads.BRAYABS)):  # fmt: skip
        assert f"constexpr int {name} = {code};" in text
    assert sorted(l1_cuda.KINDS) == sorted(l1_heads.KINDS.values())


def test_sums_kept_by_size_unless_told(monkeypatch):
    """HARMONIC_L1_CUDA_STORE=auto keeps the forward's sums up to the byte limit (a GPT-2 step's 16k rows x 50304
    centres fit in the default 4 GiB; bray_curtis keeps two sums per pair, twice the bytes); 0 / 1 decide alone."""
    monkeypatch.delenv("HARMONIC_L1_CUDA_STORE", raising=False)
    monkeypatch.delenv("HARMONIC_L1_CUDA_STORE_MAX_BYTES", raising=False)
    assert l1_cuda.keep_sums(l1_heads.MANHATTAN, 16384, 50304)
    assert not l1_cuda.keep_sums(l1_heads.MANHATTAN, 65536, 50304)  # 13 GB: recomputed
    assert all(l1_cuda.keep_sums(kind, 16, 16) for kind in l1_cuda.KINDS)
    assert l1_cuda.keep_sums(l1_heads.BRAYCURTIS, 8192, 50304)  # 3.3 GB: the benchmark's shape
    assert not l1_cuda.keep_sums(l1_heads.BRAYCURTIS, 16384, 50304)  # 6.6 GB: a GPT-2 step's rows, recomputed
    monkeypatch.setenv("HARMONIC_L1_CUDA_STORE_MAX_BYTES", "1000")
    assert not l1_cuda.keep_sums(l1_heads.BRAYABS, 16, 16) and l1_cuda.keep_sums(l1_heads.BRAYABS, 1, 128)
    monkeypatch.setenv("HARMONIC_L1_CUDA_STORE", "1")
    assert l1_cuda.keep_sums(l1_heads.MANHATTAN, 65536, 50304)
    monkeypatch.setenv("HARMONIC_L1_CUDA_STORE", "0")
    assert not l1_cuda.keep_sums(l1_heads.MANHATTAN, 1, 1)
    monkeypatch.setenv("HARMONIC_L1_CUDA_STORE", "yes")
    with pytest.raises(ValueError, match="HARMONIC_L1_CUDA_STORE"):
        l1_cuda.keep_sums(l1_heads.MANHATTAN, 1, 1)


def test_fused_backward_switch(monkeypatch):
    """HARMONIC_L1_CUDA_FUSED: one backward sweep for dx and dW unless told 0; any other value is an error."""
    monkeypatch.delenv("HARMONIC_L1_CUDA_FUSED", raising=False)
    assert l1_cuda.fused()
    monkeypatch.setenv("HARMONIC_L1_CUDA_FUSED", "0")
    assert not l1_cuda.fused()
    monkeypatch.setenv("HARMONIC_L1_CUDA_FUSED", "auto")
    with pytest.raises(ValueError, match="HARMONIC_L1_CUDA_FUSED"):
        l1_cuda.fused()
