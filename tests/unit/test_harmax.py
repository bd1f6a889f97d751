"""HarMax in log space: agrees with the linear-space definition, never underflows, is scale invariant, and
harmonic_loss is cross-entropy on the head's logits."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import harmonic
from harmonic.harmax import DEFAULT_EPS, harmax_logits

positive_rows = st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=8)


def test_matches_linear_space_definition():
    d = torch.tensor([[0.5, 1.0, 2.0, 4.0], [3.0, 3.0, 1e-3, 7.0]], dtype=torch.float64)
    for n in (0.5, 1.0, 3.0):
        powered = d ** (-n)
        expected = powered / powered.sum(-1, keepdim=True)
        got = harmonic.harmax_log_probs(d, n, eps=0.0).exp()
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)


def test_eps_is_added_to_d():
    d = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    eps = 0.25
    expected = torch.tensor([[eps**-2, (1 + eps) ** -2]], dtype=torch.float64)
    torch.testing.assert_close(harmonic.harmax_log_probs(d, 2.0, eps).exp(), expected / expected.sum())


@settings(max_examples=30, deadline=None)
@given(positive_rows, st.floats(0.5, 2000.0))
def test_probabilities_sum_to_one_without_underflow(row, n):
    d = torch.tensor([row], dtype=torch.float32)
    logp = harmonic.harmax_log_probs(d, n)
    assert torch.isfinite(logp).all()
    assert abs(logp.exp().sum().item() - 1.0) < 1e-5
    # The nearest centre always keeps the largest probability, even where d^-n itself under/overflows.
    assert d[0, logp.argmax()] == d.min()


@settings(max_examples=30, deadline=None)
@given(positive_rows, st.floats(1e-3, 1e3), st.floats(0.5, 100.0))
def test_invariant_to_scaling_all_distances(row, scale, n):
    d = torch.tensor([row], dtype=torch.float64)
    torch.testing.assert_close(
        harmonic.harmax_log_probs(scale * d, n, eps=0.0), harmonic.harmax_log_probs(d, n, eps=0.0), rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_computed_in_float32(dtype):
    d = torch.tensor([[1e-3, 0.5, 2.0, 60000.0]]).to(dtype)
    logp = harmonic.harmax_log_probs(d, n=1536.0)
    assert logp.dtype == torch.float32
    assert torch.isfinite(logp).all()
    torch.testing.assert_close(logp, harmonic.harmax_log_probs(d.float(), n=1536.0))
    assert harmonic.harmax_log_probs(d.double(), 2.0).dtype == torch.float64


def test_large_exponent_picks_nearest_with_probability_one():
    d = torch.tensor([[1.0, 1.01, 5.0]])
    p = harmonic.harmax_log_probs(d, n=2000.0).exp()
    assert p[0, 0].item() == pytest.approx(1.0, abs=1e-8)  # ratio 1.01^2000 ~ 4e8
    assert torch.isfinite(harmonic.harmax_log_probs(torch.zeros(1, 3), n=2000.0)).all()


def test_logits_are_minus_n_log_d_plus_eps():
    d = torch.rand(3, 5, dtype=torch.float64)
    torch.testing.assert_close(harmax_logits(d, 28.0), -28.0 * torch.log(d + DEFAULT_EPS))


@pytest.mark.parametrize("distance, params", [("euclidean", {}), ("minkowski", {"p": 3.0}), ("cosine", {})])
def test_harmonic_loss_equals_cross_entropy_of_head_and_direct_formula(distance, params):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    n = 2.5
    loss = harmonic.harmonic_loss(x, w, y, distance, n, **params)
    head = harmonic.HarmonicHead(4, 3, distance, n=n, **params).double()
    with torch.no_grad():
        head.centres.copy_(w)
    torch.testing.assert_close(loss, F.cross_entropy(head(x), y))
    d = harmonic.pairwise(distance, x, w, **params).numpy() + DEFAULT_EPS
    direct = -np.mean(np.log(d[np.arange(6), y.numpy()] ** -n / (d**-n).sum(1)))
    assert loss.item() == pytest.approx(direct, rel=1e-10)


def test_harmonic_loss_with_leading_dimensions_and_mahalanobis_matrix():
    x, w, y = torch.randn(2, 3, 4), torch.randn(5, 4), torch.randint(0, 5, (2, 3))
    flat = harmonic.harmonic_loss(x.reshape(6, 4), w, y.reshape(6), "mahalanobis", 1.0, matrix=2 * torch.eye(4))
    torch.testing.assert_close(harmonic.harmonic_loss(x, w, y, "mahalanobis", 1.0, matrix=2 * torch.eye(4)), flat)
    # M = 2 I scales every distance by sqrt(2): HarMax does not change (up to eps).
    torch.testing.assert_close(flat, harmonic.harmonic_loss(x, w, y, "euclidean"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "n, eps, needle", [(0.0, 1e-8, "'n'"), (-1.0, 1e-8, "'n'"), (math.inf, 1e-8, "'n'"), (1.0, -1e-3, "'eps'")]
)
def test_bad_exponent_or_eps(n, eps, needle):
    with pytest.raises(ValueError, match=needle):
        harmonic.harmax_log_probs(torch.ones(1, 2), n, eps)
    with pytest.raises(ValueError, match=needle):
        harmonic.harmonic_loss(torch.ones(1, 2), torch.ones(3, 2), torch.zeros(1, dtype=torch.long), n=n, eps=eps)
