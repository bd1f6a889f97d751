"""Every registry distance against an independent reference (scipy's cdist, or a plain numpy loop), gradients,
properties and numerics. The reference table is keyed by registry name: a new distance without one fails."""

import re

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist
from scipy.special import expit, logsumexp

import harmonic
from harmonic import distances as dist_module
from harmonic.distances import distance_names, get_distance, is_matmul_type, pairwise


def _random_factor(dim, seed=0):
    """A random lower-triangular L with a positive diagonal (so M = L L^T is positive definite)."""
    gen = np.random.default_rng(seed)
    return np.tril(gen.normal(size=(dim, dim))) + 2.0 * np.eye(dim)


def _loop(fn):
    """Reference by a plain double loop over rows: fn(u, v) -> float."""

    def reference(x, w, **_):
        return np.array([[fn(u, v) for v in w] for u in x])

    return reference


def _ratio(num, den):
    """num / den with 0/0 counted as 0."""
    return 0.0 if den == 0 else num / den


def _soft_bits(v, T):
    return expit(v / T)


# name -> list of (scalar params, tensor kwargs builder(D) -> dict of numpy arrays, reference(x, w, **everything))
REFERENCES = {
    "euclidean": [({}, None, lambda x, w: cdist(x, w, "euclidean"))],
    "manhattan": [({}, None, lambda x, w: cdist(x, w, "cityblock"))],
    "minkowski": [
        ({"p": p}, None, lambda x, w, p=p: cdist(x, w, "minkowski", p=p)) for p in (1.0, 1.5, 2.0, 3.0, 7.0)
    ]
    + [({"p": 0.5}, None, _loop(lambda u, v: np.sum(np.abs(u - v) ** 0.5) ** 2.0))],
    "chebyshev": [({}, None, lambda x, w: cdist(x, w, "chebyshev"))],
    "chebyshev_smooth": [
        ({"alpha": a}, None, _loop(lambda u, v, a=a: logsumexp(a * np.abs(u - v)) / a)) for a in (0.5, 10.0)
    ],
    # scipy gives nan for a zero vector; the library's convention is distance 1 (no direction).
    "cosine": [({}, None, lambda x, w: np.nan_to_num(cdist(x, w, "cosine"), nan=1.0))],
    "canberra": [({}, None, lambda x, w: cdist(x, w, "canberra"))],
    # scipy gives nan for 0/0 (both zero vectors); the library counts it 0, as canberra's 0/0 terms.
    "bray_curtis": [({}, None, lambda x, w: np.nan_to_num(cdist(x, w, "braycurtis"), nan=0.0, posinf=np.inf))],
    "bray_curtis_abs": [
        ({}, None, _loop(lambda u, v: _ratio(np.abs(u - v).sum(), np.abs(u).sum() + np.abs(v).sum())))
    ],
    "mahalanobis": [
        ({}, None, lambda x, w: cdist(x, w, "euclidean")),
        (
            {},
            lambda dim: {"factor": _random_factor(dim)},
            lambda x, w, factor: cdist(x, w, "mahalanobis", VI=factor @ factor.T),
        ),
        (
            {},
            lambda dim: {"matrix": _random_factor(dim, 1) @ _random_factor(dim, 1).T},
            lambda x, w, matrix: cdist(x, w, "mahalanobis", VI=matrix),
        ),
    ],
    "mahalanobis_diagonal": [
        ({}, None, lambda x, w: cdist(x, w, "euclidean")),
        (
            {},
            lambda dim: {"diagonal": np.exp(np.random.default_rng(2).normal(size=dim))},
            lambda x, w, diagonal: cdist(x, w, "mahalanobis", VI=np.diag(diagonal)),
        ),
    ],
    "hamming_soft": [
        (
            {"T": T},
            None,
            lambda x, w, T=T: cdist(_soft_bits(x, T), _soft_bits(w, T), "cityblock") / x.shape[1],
        )
        for T in (0.3, 1.0)
    ],
    # Evaluation mode (training=False): no noise, the soft bits.
    "hamming_gumbel": [
        ({"T": 0.5}, None, lambda x, w: cdist(_soft_bits(x, 0.5), _soft_bits(w, 0.5), "cityblock") / x.shape[1])
    ],
    "hamming_hard": [({"threshold": t}, None, lambda x, w, t=t: cdist(x > t, w > t, "hamming")) for t in (0.0, 0.4)],
}

CASES = [
    pytest.param(name, params, tensors, ref, id=f"{name}-{i}")
    for name, cases in REFERENCES.items()
    for i, (params, tensors, ref) in enumerate(cases)
]


def test_every_registry_distance_has_a_reference():
    assert list(REFERENCES) == distance_names()


def test_registry_flags_and_lookup():
    assert [n for n in distance_names() if is_matmul_type(n)] == [
        "euclidean",
        "cosine",
        "mahalanobis",
        "mahalanobis_diagonal",
    ]
    assert "baseline" not in distance_names()
    assert harmonic.distance_names() == distance_names()
    for name in distance_names():
        entry = get_distance(name)
        assert entry.name == name
        assert set(entry.defaults()) == {p.name for p in entry.params}


@pytest.mark.parametrize("name, params, tensors, reference", CASES)
@pytest.mark.parametrize("shape", [(7, 5, 6), (1, 1, 1), (4, 1, 3), (3, 6, 1)])
def test_matches_reference(name, params, tensors, reference, shape):
    n, c, dim = shape
    gen = np.random.default_rng(n * 100 + c * 10 + dim)
    x, w = gen.normal(size=(n, dim)), gen.normal(size=(c, dim))
    extra = tensors(dim) if tensors else {}
    got = pairwise(name, torch.tensor(x), torch.tensor(w), **params, **{k: torch.tensor(v) for k, v in extra.items()})
    assert got.shape == (n, c) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), reference(x, w, **extra), rtol=1e-9, atol=1e-10)


def test_canberra_and_bray_curtis_zero_over_zero_count_zero():
    x = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([[0.0, 3.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(pairwise("canberra", x, w).numpy(), cdist(x, w, "canberra"))
    zero = torch.zeros(1, 3, dtype=torch.float64)
    assert pairwise("bray_curtis", zero, zero).item() == 0.0
    assert pairwise("bray_curtis_abs", zero, zero).item() == 0.0
    assert pairwise("canberra", zero, zero).item() == 0.0


def test_chunked_broadcast_matches_unchunked(monkeypatch):
    """A tiny byte budget forces one centre per chunk (and checkpointing); values and gradients must not change."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(9, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    for name in ("manhattan", "minkowski", "canberra", "bray_curtis", "hamming_soft"):
        whole = pairwise(name, x, w)
        grads_whole = torch.autograd.grad(whole.square().sum(), (x, w))
        monkeypatch.setattr(dist_module, "BROADCAST_BYTES_BUDGET", 1)
        chunked = pairwise(name, x, w)
        grads_chunked = torch.autograd.grad(chunked.square().sum(), (x, w))
        monkeypatch.undo()
        torch.testing.assert_close(chunked, whole)
        for a, b in zip(grads_chunked, grads_whole):
            torch.testing.assert_close(a, b)


def test_chunked_gumbel_noise_is_consistent(monkeypatch):
    """The noise is drawn once per call (not per chunk, not again in the checkpointed backward): with the same seed,
    chunked and whole computations agree in value and gradient."""
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    results = []
    for budget in (dist_module.BROADCAST_BYTES_BUDGET, 1):
        monkeypatch.setattr(dist_module, "BROADCAST_BYTES_BUDGET", budget)
        torch.manual_seed(5)
        d = pairwise("hamming_gumbel", x, w, training=True)
        results.append((d, *torch.autograd.grad(d.square().sum(), (x, w))))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


def test_leading_dimensions_are_kept():
    x, w = torch.randn(2, 3, 4), torch.randn(5, 4)
    for name in distance_names():
        assert pairwise(name, x, w).shape == (2, 3, 5)


# ---------------------------------------------------------------- gradients


def _gradcheck_params(name):
    """Parameters for gradcheck: the first reference case's scalars (hamming_hard is checked separately)."""
    return REFERENCES[name][0][0]


@pytest.mark.parametrize("name", [n for n in distance_names() if n != "hamming_hard"])
def test_gradcheck_distance_then_harmax(name):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    params = _gradcheck_params(name)

    def fn(x, w):
        return harmonic.harmax_log_probs(pairwise(name, x, w, **params), n=1.7)

    assert torch.autograd.gradcheck(fn, (x, w))


@pytest.mark.parametrize("argument", ["factor", "matrix", "diagonal"])
def test_gradcheck_mahalanobis_metric(argument):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    raw = (
        torch.eye(4, dtype=torch.float64) + 0.3 * torch.randn(4, 4, dtype=torch.float64, generator=gen)
    ).requires_grad_()
    name = "mahalanobis_diagonal" if argument == "diagonal" else "mahalanobis"

    def fn(x, w, raw):
        metric = {"factor": torch.tril(raw), "matrix": raw @ raw.t(), "diagonal": raw.diagonal().exp()}[argument]
        return harmonic.harmax_log_probs(pairwise(name, x, w, **{argument: metric}), n=2.0)

    assert torch.autograd.gradcheck(fn, (x, w, raw))


@pytest.mark.parametrize("name", ["mahalanobis", "mahalanobis_diagonal"])
def test_gradcheck_mahalanobis_head_parameters(name):
    """Through the module: gradients reach the head's own metric parameter and its centres."""
    head = harmonic.HarmonicHead(4, 5, distance=name, n=1.5).double()
    gen = torch.Generator().manual_seed(3)
    metric_name = "factor_raw" if name == "mahalanobis" else "log_diagonal"
    metric = getattr(head, metric_name).detach() + 0.2 * torch.randn(
        getattr(head, metric_name).shape, generator=gen, dtype=torch.float64
    )
    x = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(5, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    metric.requires_grad_()

    def fn(x, w, metric):
        return torch.func.functional_call(head, {"weight": w, metric_name: metric}, (x,))

    assert torch.autograd.gradcheck(fn, (x, w, metric))


def test_hamming_hard_straight_through_gradient():
    """Forward: exact hard Hamming. Backward: the gradient of the bit formula through sigmoid((v - t) / T)."""
    gen = torch.Generator().manual_seed(4)
    T, t = 0.7, 0.1
    x = torch.randn(3, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(4, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    upstream = torch.randn(3, 4, dtype=torch.float64, generator=gen)
    d = pairwise("hamming_hard", x, w, T=T, threshold=t)
    gx, gw = torch.autograd.grad((d * upstream).sum(), (x, w))
    xn, wn, g = x.detach().numpy(), w.detach().numpy(), upstream.numpy()
    bx, bw = (xn > t).astype(float), (wn > t).astype(float)
    sx, sw = expit((xn - t) / T), expit((wn - t) / T)
    dim = xn.shape[1]
    # d_ic = sum_k (bx_ik + bw_ck - 2 bx_ik bw_ck) / D
    expected_gx = (g @ (1 - 2 * bw)) / dim * sx * (1 - sx) / T
    expected_gw = (g.T @ (1 - 2 * bx)) / dim * sw * (1 - sw) / T
    np.testing.assert_allclose(gx.numpy(), expected_gx, rtol=1e-10)
    np.testing.assert_allclose(gw.numpy(), expected_gw, rtol=1e-10)
    assert np.abs(expected_gx).sum() > 0  # the check is not vacuous


def test_hamming_gumbel_noise_only_in_training():
    x, w = torch.randn(4, 8), torch.randn(3, 8)
    evaluation = pairwise("hamming_gumbel", x, w, T=0.5)
    torch.testing.assert_close(evaluation, pairwise("hamming_soft", x, w, T=0.5))
    torch.manual_seed(0)
    noisy = pairwise("hamming_gumbel", x, w, T=0.5, training=True)
    torch.manual_seed(0)
    again = pairwise("hamming_gumbel", x, w, T=0.5, training=True)
    assert not torch.allclose(noisy, evaluation)
    torch.testing.assert_close(noisy, again)
    assert ((noisy >= 0) & (noisy <= 1)).all()
    torch.testing.assert_close(pairwise("hamming_gumbel", x, w, T=0.5, noise=0.0, training=True), evaluation)


# ---------------------------------------------------------------- properties


def _arrays(draw, n, c, dim):
    # Components are 0 or of magnitude >= 1e-6: norms below the library's TINY (1e-30) deliberately count as zero.
    values = st.floats(-10, 10, allow_nan=False).map(lambda v: 0.0 if abs(v) < 1e-6 else v)
    x = np.array(draw(st.lists(values, min_size=n * dim, max_size=n * dim))).reshape(n, dim)
    w = np.array(draw(st.lists(values, min_size=c * dim, max_size=c * dim))).reshape(c, dim)
    return x, w


@st.composite
def problems(draw):
    n, c, dim = draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    return (draw(st.sampled_from(distance_names())), *_arrays(draw, n, c, dim))


@settings(max_examples=40, deadline=None)
@given(problems())
def test_random_shapes_give_finite_nonnegative_distances(problem):
    name, x, w = problem
    d = pairwise(name, torch.tensor(x), torch.tensor(w))
    assert d.shape == (x.shape[0], w.shape[0])
    assert torch.isfinite(d).all() and (d >= 0).all()
    logp = harmonic.harmax_log_probs(d, n=3.0)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(x.shape[0], dtype=torch.float64))


@settings(max_examples=40, deadline=None)
@given(problems(), st.data())
def test_loss_and_gradients_stay_finite_with_ties_zeros_and_exact_hits(problem, data):
    """float32, inputs copied from centres or negated centres (x = w, x = -w), zeros and ties from the strategy."""
    name, x, w = problem
    for i in range(len(x)):
        choice = data.draw(st.sampled_from(["keep", "copy", "negate"]))
        if choice != "keep":
            x[i] = (1 if choice == "copy" else -1) * w[data.draw(st.integers(0, len(w) - 1))]
    x = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    w = torch.tensor(w, dtype=torch.float32, requires_grad=True)
    y = torch.tensor(data.draw(st.lists(st.integers(0, len(w) - 1), min_size=len(x), max_size=len(x))))
    n = data.draw(st.sampled_from([1.0, 28.0, 1536.0]))
    loss = harmonic.harmonic_loss(x, w, y, name, n)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all() and torch.isfinite(w.grad).all()


@settings(max_examples=30, deadline=None)
@given(problems())
def test_argmax_of_harmax_is_the_nearest_centre_by_the_reference(problem):
    name, x, w = problem
    params, tensors, reference = REFERENCES[name][0]
    assert tensors is None
    ref = reference(x, w)
    logp = harmonic.harmax_log_probs(pairwise(name, torch.tensor(x), torch.tensor(w), **params), n=2.0)
    picked = logp.argmax(-1).numpy()
    # Compare distances, not indices: ties (equal distances) may pick either centre.
    np.testing.assert_allclose(ref[np.arange(len(x)), picked], ref.min(1), rtol=1e-9, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(problems(), st.floats(1e-3, 1e3))
def test_cosine_is_invariant_to_scaling_x(problem, scale):
    _, x, w = problem
    x = torch.tensor(x)
    # Norms below TINY count as zero vectors (no direction); keep x clear of that boundary.
    assume((x.norm(dim=-1) * min(scale, 1.0) > 1e-20).all())
    w = torch.tensor(w)
    torch.testing.assert_close(pairwise("cosine", scale * x, w), pairwise("cosine", x, w), rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- numerics


def _every_distance_head(dim, classes, dtype=torch.float32, n=1.0):
    for name in distance_names():
        torch.manual_seed(0)
        yield name, harmonic.HarmonicHead(dim, classes, distance=name, n=n).to(dtype)


def _assert_finite_loss_and_grads(head, x, y):
    x = x.clone().requires_grad_()
    loss = torch.nn.functional.cross_entropy(head(x), y)
    loss.backward()
    assert torch.isfinite(loss), loss
    assert torch.isfinite(x.grad).all()
    for p in head.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


@pytest.mark.parametrize("n", [1.0, 1536.0])
def test_x_exactly_on_a_centre(n):
    for name, head in _every_distance_head(6, 4, n=n):
        x = head.centres.detach()[[0, 1, 2, 3, 0]].clone()
        # Labels both right (0..3) and wrong (last row sits on centre 0 but is labelled 3).
        y = torch.tensor([0, 1, 2, 3, 3])
        _assert_finite_loss_and_grads(head, x, y)
        if name != "hamming_hard":  # bits of two random centres may coincide
            assert head.eval()(x[:4]).argmax(-1).tolist() == [0, 1, 2, 3], name


@pytest.mark.parametrize("scale", [1e-6, 1e6])
@pytest.mark.parametrize("n", [1.0, 1536.0])
def test_very_small_and_very_large_norms(scale, n):
    for _, head in _every_distance_head(6, 4, n=n):
        with torch.no_grad():
            head.centres.mul_(scale)
        x = scale * torch.randn(5, 6)
        _assert_finite_loss_and_grads(head, x, torch.tensor([0, 1, 2, 3, 0]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(dtype):
    for name, head in _every_distance_head(6, 4, dtype=dtype, n=28.0):
        x = torch.randn(5, 6).to(dtype)
        logits = head(x)
        assert logits.dtype == torch.float32, name
        _assert_finite_loss_and_grads(head, x, torch.tensor([0, 1, 2, 3, 0]))
        if is_matmul_type(name):  # fp32 accumulation: close to the fp32 computation on the same (rounded) values
            reference = harmonic.HarmonicHead(6, 4, distance=name, n=28.0)
            reference.load_state_dict({k: v.float() for k, v in head.state_dict().items()})
            torch.testing.assert_close(logits, reference(x.float()), rtol=1e-4, atol=1e-3)


# ---------------------------------------------------------------- bad input


def test_unknown_distance_lists_valid_names():
    with pytest.raises(ValueError, match="unknown distance 'nope'.*euclidean.*hamming_hard"):
        pairwise("nope", torch.ones(1, 2), torch.ones(1, 2))
    with pytest.raises(ValueError, match="valid names"):
        harmonic.HarmonicHead(2, 3, distance="nope")
    with pytest.raises(ValueError, match="valid names"):
        harmonic.harmonic_loss(torch.ones(1, 2), torch.ones(3, 2), torch.zeros(1, dtype=torch.long), "nope")


@pytest.mark.parametrize(
    "name, params, needle",
    [
        ("minkowski", {"p": 0}, "'p' must be a number > 0 (got 0)"),
        ("minkowski", {"p": -1.5}, "'p'"),
        ("minkowski", {"p": float("inf")}, "'p'"),
        ("minkowski", {"p": "3"}, "'p'"),
        ("hamming_soft", {"T": 0.0}, "'T' must be a number > 0"),
        ("hamming_gumbel", {"T": -1.0}, "'T'"),
        ("hamming_gumbel", {"noise": -1.0}, "'noise' must be a number >= 0"),
        ("hamming_hard", {"T": 0}, "'T'"),
        ("chebyshev_smooth", {"alpha": 0}, "'alpha'"),
        ("cosine", {"p": 3}, "unknown parameter(s) ['p']"),
    ],
)
def test_invalid_parameters_are_named(name, params, needle):
    x, w = torch.ones(2, 3), torch.ones(4, 3)
    with pytest.raises(ValueError, match=re.escape(needle)):
        pairwise(name, x, w, **params)
    with pytest.raises(ValueError, match=name):
        harmonic.HarmonicHead(3, 4, distance=name, **params)


def test_mismatched_feature_dimension_is_named():
    for name in distance_names():
        with pytest.raises(ValueError, match="mismatched D: x has D=3 features but w has D=4"):
            pairwise(name, torch.ones(2, 3), torch.ones(5, 4))


def test_bad_mahalanobis_metric_shapes():
    x, w = torch.ones(2, 3), torch.ones(4, 3)
    with pytest.raises(ValueError, match=r"factor must have shape \(3, 3\)"):
        pairwise("mahalanobis", x, w, factor=torch.eye(4))
    with pytest.raises(ValueError, match="not both"):
        pairwise("mahalanobis", x, w, factor=torch.eye(3), matrix=torch.eye(3))
    with pytest.raises(ValueError, match=r"diagonal must have shape \(3,\)"):
        pairwise("mahalanobis_diagonal", x, w, diagonal=torch.ones(4))
