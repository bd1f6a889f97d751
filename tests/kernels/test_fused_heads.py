"""Fused Triton heads (run on the CPU by Triton's interpreter, see conftest.py) against the reference
implementation: harmonic.pairwise, then -n log(d + eps), then F.cross_entropy.

Tolerances (float32 inputs; the interpreter computes in float32 like the reference, only summation order differs):
loss within 1e-5 relative, each gradient within 1e-4 relative in norm. bfloat16 inputs: the kernels round their
dot-product operands to bf16 while the reference upcasts first, so 2e-2 (loss) and 5e-2 (gradients) there.
Shapes are tiny (N <= 16, V <= 40, D <= 32) so the interpreter stays fast; tiles are 16 wide under the
interpreter, so V = 21 and V = 40 leave a partial last tile.
"""

import pytest
import torch

from harmonic import kernels

LOSS_RTOL, GRAD_RTOL = 1e-5, 1e-4


def _case(distance, n_rows=9, classes=21, dim=12, seed=0, dtype=torch.float32):
    """Fresh random inputs; the metric factor where the distance has one."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_rows, dim, generator=gen).to(dtype).requires_grad_()
    w = torch.randn(classes, dim, generator=gen).to(dtype).requires_grad_()
    y = torch.randint(0, classes, (n_rows,), generator=gen)
    factor = None
    if distance == "mahalanobis":
        factor = torch.tril(0.3 * torch.randn(dim, dim, generator=gen) + torch.eye(dim)).requires_grad_()
    elif distance == "mahalanobis_diagonal":
        factor = (torch.rand(dim, generator=gen) + 0.5).requires_grad_()
    return x, w, y, factor


def _loss_and_grads(fn, x, w, y, factor, **kwargs):
    loss = fn(x, w, y, factor=factor, **kwargs)
    inputs = [x, w] + ([factor] if factor is not None else [])
    grads = torch.autograd.grad(loss.sum(), inputs)
    return loss.detach(), grads


def _compare(x, w, y, factor, loss_rtol=LOSS_RTOL, grad_rtol=GRAD_RTOL, **kwargs):
    fused, fused_grads = _loss_and_grads(kernels.fused_harmonic_loss, x, w, y, factor, **kwargs)
    ref, ref_grads = _loss_and_grads(kernels.reference_harmonic_loss, x, w, y, factor, **kwargs)
    assert torch.isfinite(fused).all() and torch.isfinite(ref).all()
    torch.testing.assert_close(fused.float(), ref.float(), rtol=loss_rtol, atol=1e-6)
    for name, got, want in zip(("x", "w", "factor"), fused_grads, ref_grads):
        assert torch.isfinite(got).all(), name
        err = float((got.float() - want.float()).norm() / want.float().norm().clamp_min(1e-12))
        assert err <= grad_rtol, f"d{name}: relative error {err:.2e} > {grad_rtol:g}"


DISTANCE_PARAMS = (
    [(name, {}) for name in kernels.FUSED if name != "minkowski"]
    + [("minkowski", {"p": p}) for p in (1.0, 1.5, 2.0, 3.0, 4.5)]
    + [
        ("chebyshev_smooth", {"alpha": 3.0}),
        ("hamming_soft", {"T": 0.5}),
        ("hamming_hard", {"T": 2.0, "threshold": 0.1}),
    ]
)


@pytest.mark.parametrize("distance,params", DISTANCE_PARAMS, ids=lambda v: str(v))
def test_matches_reference_forward_and_backward(distance, params):
    x, w, y, factor = _case(distance)
    y[3] = -100  # one ignored row
    _compare(x, w, y, factor, distance=distance, n=3.0, eps=1e-8, params=params)


@pytest.mark.parametrize("distance", kernels.FUSED)
def test_label_smoothing_and_sum_reduction(distance):
    x, w, y, factor = _case(distance, n_rows=16, classes=40, dim=8, seed=1)
    _compare(x, w, y, factor, distance=distance, n=1.5, eps=1e-8, params={}, label_smoothing=0.1, reduction="sum")


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "manhattan", "bray_curtis", "chebyshev"])
def test_per_row_losses_and_single_row(distance):
    x, w, y, factor = _case(distance, n_rows=1, classes=17, dim=32, seed=2)
    _compare(x, w, y, factor, distance=distance, n=2.0, eps=1e-8, params={}, reduction="none")


@pytest.mark.parametrize("distance", kernels.FUSED)
def test_input_equal_to_a_centre(distance):
    """d = 0 for one pair: the logit is -n log(eps) and the gradient must stay finite and match."""
    x, w, y, factor = _case(distance, n_rows=5, classes=19, dim=8, seed=3)
    with torch.no_grad():
        x[1] = w[4]
        x[2] = w[7]
    y[1] = 4
    _compare(x, w, y, factor, distance=distance, n=1.0, eps=1e-3, params={})


def test_every_row_ignored_gives_nan_like_cross_entropy():
    x, w, y, _ = _case("manhattan")
    y[:] = -100
    fused = kernels.fused_harmonic_loss(x, w, y, distance="manhattan", n=1.0, eps=1e-8)
    ref = kernels.reference_harmonic_loss(x, w, y, distance="manhattan", n=1.0, eps=1e-8)
    assert torch.isnan(fused) and torch.isnan(ref)
    assert float(kernels.fused_harmonic_loss(x, w, y, distance="euclidean", n=1.0, eps=1e-8, reduction="sum")) == 0


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "manhattan", "canberra"])
def test_bfloat16_inputs(distance):
    x, w, y, factor = _case(distance, n_rows=8, classes=24, dim=16, seed=4, dtype=torch.bfloat16)
    _compare(x, w, y, factor, loss_rtol=2e-2, grad_rtol=5e-2, distance=distance, n=1.0, eps=1e-8, params={})


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_bfloat16_points_close_to_far_away_centres(distance):
    """bf16 euclid / cosine store the GEMM's q = -d^2/2 or cos - 1 in bf16 (matmul_heads._shifted_operands). With
    |x|^2 ~ 1000 and d^2 ~ 0.1, a bf16 a.b (error ~4) would lose d entirely; q must keep it to bf16 precision,
    also for points exactly on a centre."""
    gen = torch.Generator().manual_seed(12)
    dim, classes, rows = 16, 24, 10
    offset = 8.0 * torch.ones(dim)
    w = (offset + 0.3 * torch.randn(classes, dim, generator=gen)).bfloat16()
    y = torch.randint(0, classes, (rows,), generator=gen)
    x = (w[y].float() + 0.1 * torch.randn(rows, dim, generator=gen)).bfloat16()
    x[0] = w[y[0]]  # exactly on its centre
    x, w = x.requires_grad_(), w.requires_grad_()
    for reduction in ("mean", "none"):  # the gradient from the forward sweep / recomputed in the backward
        _compare(x, w, y, None, 2e-2, 5e-2, distance=distance, n=4.0, eps=1e-3, params={}, reduction=reduction)
    with torch.no_grad():  # a zero vector (cosine: distance 1 to every centre, F.normalize's eps branch)
        x[1] = 0.0
        kwargs = dict(distance=distance, n=4.0, eps=1e-3, reduction="none")
        fused, ref = (
            kernels.fused_harmonic_loss(x, w, y, **kwargs),
            kernels.reference_harmonic_loss(x, w, y, **kwargs),
        )
    torch.testing.assert_close(fused, ref, rtol=2e-2, atol=1e-4)


def test_head_loss_uses_the_kernel_and_agrees():
    """HarmonicHead.loss(fused=True) goes through the kernels and equals the reference path."""
    from harmonic.heads import HarmonicHead

    torch.manual_seed(5)
    head = HarmonicHead(12, 21, distance="bray_curtis", n=2.0)
    x = torch.randn(2, 4, 12)
    y = torch.randint(0, 21, (2, 4))
    fused = head.loss(x, y, fused=True)
    (fused_grad,) = torch.autograd.grad(fused, [head.weight])
    ref = head.loss(x, y, fused=False)
    (ref_grad,) = torch.autograd.grad(ref, [head.weight])
    torch.testing.assert_close(fused, ref, rtol=LOSS_RTOL, atol=1e-6)
    torch.testing.assert_close(fused_grad, ref_grad, rtol=1e-4, atol=1e-7)


def test_supports_and_bad_input():
    assert kernels.supports("manhattan", "cpu")  # under the interpreter
    assert kernels.supports("hamming_gumbel", "cpu")
    assert not kernels.supports("no_such_distance", "cpu")
    x, w, y, _ = _case("manhattan")
    y[0] = 21
    with pytest.raises(ValueError, match="labels must be in"):
        kernels.fused_harmonic_loss(x, w, y, distance="manhattan", n=1.0, eps=1e-8)
    with pytest.raises(ValueError, match="reduction"):
        kernels.fused_harmonic_loss(x, w, y, distance="manhattan", n=1.0, eps=1e-8, reduction="avg")
    with pytest.raises(ValueError, match="share D"):
        kernels.fused_harmonic_loss(x, w[:, :5], y, distance="manhattan", n=1.0, eps=1e-8)


@pytest.mark.parametrize("noise", [1.0, 0.0])
def test_hamming_gumbel_training_noise_matches_the_reference(noise):
    """In training the noise is drawn in torch before the kernel, in the reference's order (x, then the centres):
    with the same seed both paths see the same noisy bits; in eval there is no noise at all."""
    x, w, y, _ = _case("hamming_gumbel", n_rows=10, classes=23, dim=12, seed=7)
    kwargs = dict(distance="hamming_gumbel", n=2.0, eps=1e-8, params={"T": 0.7, "noise": noise})
    torch.manual_seed(11)
    fused, fused_grads = _loss_and_grads(kernels.fused_harmonic_loss, x, w, y, None, training=True, **kwargs)
    torch.manual_seed(11)
    ref, ref_grads = _loss_and_grads(kernels.reference_harmonic_loss, x, w, y, None, training=True, **kwargs)
    torch.testing.assert_close(fused, ref, rtol=LOSS_RTOL, atol=1e-6)
    for got, want in zip(fused_grads, ref_grads):
        assert float((got - want).norm() / want.norm()) <= GRAD_RTOL
    eval_loss = kernels.fused_harmonic_loss(x, w, y, training=False, **kwargs)
    noisy_again = kernels.fused_harmonic_loss(x, w, y, training=True, **kwargs)
    assert (float(noisy_again) != float(eval_loss)) == (noise > 0)


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "manhattan"])
def test_gradient_for_the_centres_only_and_no_gradient_at_all(distance):
    """x without requires_grad (frozen features): dW still matches; under no_grad the loss has no graph."""
    x, w, y, _ = _case(distance, n_rows=7, classes=19, dim=10, seed=9)
    x = x.detach()
    kwargs = dict(distance=distance, n=2.0, eps=1e-8, params={})
    (fused_grad,) = torch.autograd.grad(kernels.fused_harmonic_loss(x, w, y, **kwargs), [w])
    (ref_grad,) = torch.autograd.grad(kernels.reference_harmonic_loss(x, w, y, **kwargs), [w])
    assert float((fused_grad - ref_grad).norm() / ref_grad.norm()) <= GRAD_RTOL
    with torch.no_grad():
        loss = kernels.fused_harmonic_loss(x, w, y, **kwargs)
    assert loss.grad_fn is None
    torch.testing.assert_close(
        loss, kernels.reference_harmonic_loss(x, w, y, **kwargs).detach(), rtol=LOSS_RTOL, atol=1e-6
    )


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("distance", ["euclidean", "cosine", "hamming_hard"])
def test_matmul_heads_over_several_row_chunks(monkeypatch, distance, reduction):
    """Rows split into chunks (tiny CHUNK_BYTES): mean computes the gradient in the forward sweep, none recomputes
    each chunk in the backward; both must equal the unchunked reference, the last chunk being partial."""
    from harmonic.kernels import matmul_heads

    classes = 21
    monkeypatch.setattr(matmul_heads, "CHUNK_BYTES", 16 * classes * 8)  # 16 rows of fp32 dots + fp32 h
    assert matmul_heads._chunk_rows(40, classes, 8, 16) == 16
    x, w, y, factor = _case(distance, n_rows=40, classes=classes, dim=12, seed=8)
    y[5] = -100
    _compare(x, w, y, factor, distance=distance, n=2.0, eps=1e-8, params={}, reduction=reduction)


@pytest.mark.parametrize("variant", ["outer", "reduce"])
@pytest.mark.parametrize(
    "distance,params",
    [("manhattan", {}), ("minkowski", {"p": 1.5}), ("chebyshev", {}), ("chebyshev_smooth", {"alpha": 2.0}),
     ("canberra", {}), ("bray_curtis", {}), ("bray_curtis_abs", {}), ("hamming_soft", {})],
)  # fmt: skip
def test_both_elementwise_backward_variants(monkeypatch, variant, distance, params):
    """The two backward strategies of l1_heads (outer-product updates / per-feature reductions) both match."""
    from harmonic.kernels import l1_heads

    monkeypatch.setattr(l1_heads, "BACKWARD", variant)
    x, w, y, factor = _case(distance, n_rows=11, classes=37, dim=20, seed=6)
    y[0] = -100
    _compare(x, w, y, factor, distance=distance, n=2.0, eps=1e-8, params=params, label_smoothing=0.05)
