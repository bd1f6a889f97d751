"""The kernel dispatch reads the registry: each distance declares its kernel family and operands
(harmonic.distances), harmonic.kernels looks the family up in IMPLEMENTATIONS."""

import pytest
import torch

from harmonic import kernels
from harmonic.distances import KernelOperands, distance_names, get_distance
from harmonic.kernels import l1_heads, matmul_heads

FAMILY_KINDS = {"matmul": matmul_heads.KINDS, "l1": l1_heads.KINDS}


def test_fused_lists_exactly_the_distances_that_declare_a_kernel():
    declared = [name for name in distance_names() if get_distance(name).kernel is not None]
    assert list(kernels.FUSED) == declared
    assert set(kernels.IMPLEMENTATIONS) == set(FAMILY_KINDS)


@pytest.mark.parametrize("distance", kernels.FUSED)
def test_operands_name_a_kind_of_their_kernel_family(distance):
    entry = get_distance(distance)
    x, w = torch.randn(3, 4), torch.randn(5, 4)
    operands = entry.kernel_operands(x, w, entry.resolve({}), None, True, torch.float32)
    family = "matmul" if distance == "minkowski" else entry.kernel  # minkowski's default p = 2 runs as euclidean
    assert operands.family == family
    assert operands.kind in FAMILY_KINDS[family]
    assert operands.a.shape[0] == 3 and operands.b.shape[0] == 5


def test_the_family_implementation_is_looked_up(monkeypatch):
    """A second implementation of a family (say CUDA kernels for l1) plugs in as that family's entry."""
    calls = []

    def recording(operands, y, **kwargs):
        calls.append((operands, kwargs))
        return torch.zeros(())

    monkeypatch.setitem(kernels.IMPLEMENTATIONS, "l1", recording)
    x, w, y = torch.randn(4, 6), torch.randn(7, 6), torch.tensor([0, 1, 2, 3])
    kernels.fused_harmonic_loss(x, w, y, distance="canberra", n=2.0, eps=1e-8, reduction="sum")
    ((operands, kwargs),) = calls
    assert isinstance(operands, KernelOperands) and (operands.family, operands.kind) == ("l1", "canberra")
    assert kwargs == {"n": 2.0, "eps": 1e-8, "smoothing": 0.0, "ignore_index": -100, "reduction": "sum"}


def test_elementwise_heads_take_the_autocast_operand_type():
    """Under autocast an L1-type head computes from operands rounded to autocast's type (as F.linear would), its
    gradients reach the fp32 inputs in fp32; without autocast the fp32 operands are used as they are."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 10, generator=gen, requires_grad=True)
    w = torch.randn(9, 10, generator=gen, requires_grad=True)
    y = torch.randint(0, 9, (6,), generator=gen)
    args = dict(distance="manhattan", n=2.0, eps=1e-8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = kernels.fused_harmonic_loss(x, w, y, **args)
    rounded = kernels.fused_harmonic_loss(x.detach().bfloat16(), w.detach().bfloat16(), y, **args)
    plain = kernels.fused_harmonic_loss(x, w, y, **args)
    assert torch.equal(under, rounded) and not torch.equal(under, plain)
    grads = torch.autograd.grad(under, (x, w))
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
