"""HarmonicHead, the baseline behind the same interface, head specs, labels and the generated JSON schema."""

import sys
import types

import pytest
import torch
import torch.nn.functional as F

import harmonic
from harmonic import head_from_spec, head_label, resolve_head_spec
from harmonic.distances import distance_names


def test_forward_is_harmax_logits_and_argmax_is_nearest_centre():
    head = harmonic.HarmonicHead(5, 7, distance="manhattan", n=3.0)
    x = torch.randn(4, 5)
    d = harmonic.pairwise("manhattan", x, head.centres)
    torch.testing.assert_close(head(x), -3.0 * torch.log(d + head.eps))
    assert head(x).argmax(-1).tolist() == d.argmin(-1).tolist()
    torch.testing.assert_close(F.log_softmax(head(x), -1), harmonic.harmax_log_probs(d, 3.0))


def test_leading_dimensions():
    head = harmonic.HarmonicHead(5, 7)
    x, y = torch.randn(2, 3, 5), torch.randint(0, 7, (2, 3))
    assert head(x).shape == (2, 3, 7)
    torch.testing.assert_close(head.loss(x, y), F.cross_entropy(head(x).reshape(6, 7), y.reshape(6)))


def test_baseline_is_a_linear_layer_with_bias():
    head = harmonic.HarmonicHead(5, 7, distance="baseline")
    x = torch.randn(4, 5)
    torch.testing.assert_close(head(x), x @ head.centres.t() + head.linear.bias)
    assert head.centres is head.linear.weight and head.centres.shape == (7, 5)
    assert harmonic.HarmonicHead(5, 7, distance="baseline", bias=False).linear.bias is None
    with pytest.raises(ValueError, match="only to the baseline"):
        harmonic.HarmonicHead(5, 7, distance="cosine", bias=False)


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "mahalanobis", "baseline"])
def test_tied_weight_shares_storage(distance):
    embedding = torch.nn.Embedding(7, 5)
    head = harmonic.HarmonicHead(5, 7, distance=distance, tied_weight=embedding.weight)
    assert head.centres is embedding.weight
    assert head.centres.data_ptr() == embedding.weight.data_ptr()
    before = embedding.weight.detach().clone()
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
    head.loss(torch.randn(4, 5), torch.tensor([0, 1, 2, 3])).backward()
    optimizer.step()
    assert not torch.equal(embedding.weight.detach(), before)  # the head's update moved the embedding
    with pytest.raises(ValueError, match="tied_weight has shape"):
        harmonic.HarmonicHead(5, 8, distance=distance, tied_weight=embedding.weight)


@pytest.mark.parametrize("distance, name", [("mahalanobis", "factor_raw"), ("mahalanobis_diagonal", "log_diagonal")])
def test_mahalanobis_heads_start_at_identity_and_train_their_metric(distance, name):
    torch.manual_seed(0)
    head = harmonic.HarmonicHead(5, 7, distance=distance, n=2.0)
    euclidean = harmonic.HarmonicHead(5, 7, n=2.0)
    euclidean.load_state_dict({"weight": head.centres.detach()})
    x = torch.randn(4, 5)
    torch.testing.assert_close(head(x), euclidean(x))
    head.loss(x, torch.tensor([0, 1, 2, 3])).backward()
    metric = getattr(head, name)
    assert metric.grad is not None and metric.grad.abs().sum() > 0
    assert any(p is metric for p in head.parameters())


def test_loss_options_match_cross_entropy():
    head = harmonic.HarmonicHead(5, 7, distance="cosine", n=4.0)
    x, y = torch.randn(6, 5), torch.tensor([0, 1, -100, 3, 6, -100])
    for kwargs in ({}, {"label_smoothing": 0.1}, {"reduction": "sum"}, {"reduction": "none"}):
        torch.testing.assert_close(head.loss(x, y, **kwargs), F.cross_entropy(head(x), y, **kwargs))
    y2 = torch.where(y < 0, torch.tensor(5), y)
    torch.testing.assert_close(head.loss(x, y2, ignore_index=5), F.cross_entropy(head(x), y2, ignore_index=5))


@pytest.fixture
def fake_kernels(monkeypatch):
    """A stand-in harmonic.kernels that records calls and supports every distance."""
    calls = []
    module = types.ModuleType("harmonic.kernels")
    module.supports = lambda distance, device: True
    module.fused_harmonic_loss = lambda *args, **kwargs: calls.append((args, kwargs)) or torch.tensor(0.0)
    monkeypatch.setitem(sys.modules, "harmonic.kernels", module)
    monkeypatch.setattr(harmonic, "kernels", module, raising=False)
    return calls


def test_fused_auto_never_used_on_cpu(fake_kernels):
    head = harmonic.HarmonicHead(5, 7)
    x, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    torch.testing.assert_close(head.loss(x, y), F.cross_entropy(head(x), y))
    assert fake_kernels == []


@pytest.mark.parametrize(
    "distance, factor_name",
    [("minkowski", None), ("mahalanobis", "factor_raw"), ("mahalanobis_diagonal", "log_diagonal")],
)
def test_fused_true_calls_the_kernel_with_the_head_settings(fake_kernels, distance, factor_name):
    head = harmonic.HarmonicHead(
        5, 7, distance=distance, n=3.0, eps=1e-6, **({"p": 3} if distance == "minkowski" else {})
    )
    x, y = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    head.loss(x, y, ignore_index=2, label_smoothing=0.1, reduction="sum", fused=True)
    ((args, kwargs),) = fake_kernels
    assert args[0] is x and args[1] is head.centres and args[2] is y
    assert kwargs["distance"] == distance and kwargs["n"] == 3.0 and kwargs["eps"] == 1e-6
    assert kwargs["params"] == ({"p": 3.0} if distance == "minkowski" else {})
    assert (kwargs["ignore_index"], kwargs["label_smoothing"], kwargs["reduction"]) == (2, 0.1, "sum")
    assert kwargs["training"] is True  # a fresh module is in training mode
    if factor_name is None:
        assert kwargs["factor"] is None
    elif distance == "mahalanobis":
        torch.testing.assert_close(kwargs["factor"], torch.tril(head.factor_raw))
    else:
        torch.testing.assert_close(kwargs["factor"], head.log_diagonal.exp())


def test_auto_takes_the_kernel_for_large_or_elementwise_heads_on_cuda(fake_kernels):
    """The choice only (no GPU needed): CUDA + supported; small matmul-type heads stay on the reference path."""
    from harmonic.heads import FUSED_MIN_PAIRS, uses_fused_kernel

    assert uses_fused_kernel("euclidean", 16384, 50304, "cuda")
    assert not uses_fused_kernel("euclidean", 128, 10, "cuda")
    assert uses_fused_kernel("cosine", FUSED_MIN_PAIRS // 8, 8, "cuda")
    assert not uses_fused_kernel("cosine", FUSED_MIN_PAIRS // 8 - 1, 8, "cuda")
    assert uses_fused_kernel("manhattan", 128, 10, "cuda")  # elementwise: the kernel at every size
    assert not uses_fused_kernel("manhattan", 16384, 50304, "cpu")
    assert not uses_fused_kernel("baseline", 16384, 50304, "cuda")


def test_fused_argument_is_checked():
    with pytest.raises(ValueError, match="fused"):
        harmonic.HarmonicHead(5, 7).loss(torch.randn(2, 5), torch.tensor([0, 1]), fused="yes")


# ---------------------------------------------------------------- specs, labels, schema


def test_resolve_fills_defaults():
    assert resolve_head_spec({"distance": "minkowski"}) == {"distance": "minkowski", "p": 2.0, "n": 1.0, "eps": 1e-8}
    assert resolve_head_spec("cosine") == {"distance": "cosine", "n": 1.0, "eps": 1e-8}
    assert resolve_head_spec({"distance": "baseline"}) == {"distance": "baseline", "bias": True}
    assert resolve_head_spec({"distance": "hamming_gumbel", "T": 2}) == {
        "distance": "hamming_gumbel",
        "T": 2.0,
        "noise": 0.1,
        "n": 1.0,
        "eps": 1e-8,
    }


@pytest.mark.parametrize(
    "spec, needle",
    [
        ({"distance": "nope"}, "unknown distance 'nope'; valid names: baseline, euclidean"),
        ({"distance": "minkowski", "p": 0}, "minkowski: parameter 'p' must be a number > 0 (got 0)"),
        ({"distance": "cosine", "n": -2}, "cosine: parameter 'n' must be a number > 0 (got -2)"),
        ({"distance": "euclidean", "eps": -1e-3}, "parameter 'eps' must be a number >= 0 (got -0.001)"),
        ({"distance": "hamming_soft", "T": 0.0}, "parameter 'T' must be a number > 0 (got 0.0)"),
        ({"distance": "cosine", "p": 3}, "cosine: unknown parameter(s) ['p']"),
        ({"distance": "baseline", "n": 3}, "baseline: unknown parameter(s) ['n']"),
        ({"distance": "baseline", "bias": 1}, "baseline: parameter 'bias' must be true or false"),
        ({"p": 3}, "'distance' key"),
    ],
)
def test_resolve_rejects_bad_specs_naming_the_problem(spec, needle):
    with pytest.raises(ValueError) as info:
        resolve_head_spec(spec)
    assert needle in str(info.value)


def test_labels():
    assert head_label({"distance": "baseline"}) == "baseline"
    assert head_label({"distance": "baseline", "bias": False}) == "baseline-nobias"
    assert head_label("euclidean") == "euclidean"
    assert head_label({"distance": "euclidean", "n": 1.0}) == "euclidean"
    assert head_label({"distance": "minkowski", "p": 3}) == "minkowski-p3"
    assert head_label({"distance": "minkowski", "p": 1.5}) == "minkowski-p1.5"
    assert head_label({"distance": "cosine"}) == "cosine"
    assert head_label({"distance": "chebyshev_smooth", "alpha": 20}) == "chebyshev_smooth-alpha20"
    assert head_label({"distance": "euclidean", "n": 28}) == "euclidean-n28"
    assert head_label({"distance": "minkowski", "p": 3, "n": 768**0.5}) == "minkowski-p3-n27.7128"
    assert head_label({"distance": "euclidean", "eps": 1e-6}) == "euclidean-eps1e-06"


def test_labels_are_unique_across_a_grid():
    specs = [{"distance": "baseline"}, {"distance": "baseline", "bias": False}]
    specs += [{"distance": name} for name in distance_names()]
    specs += [{"distance": "minkowski", "p": p} for p in (0.5, 1.5, 3)]
    specs += [{"distance": "euclidean", "n": n} for n in (2, 28, 0.5)]
    labels = [head_label(s) for s in specs]
    assert len(set(labels)) == len(labels)
    assert all("/" not in label and " " not in label for label in labels)


def test_head_from_spec():
    head = head_from_spec({"distance": "minkowski", "p": 3, "n": 2}, 5, 7)
    assert (head.distance, head.n, head.params) == ("minkowski", 2.0, {"p": 3.0})
    assert head_from_spec("baseline", 5, 7).linear.bias is not None
    embedding = torch.nn.Embedding(7, 5)
    assert head_from_spec("cosine", 5, 7, tied_weight=embedding.weight).centres is embedding.weight
    with pytest.raises(ValueError, match="valid names"):
        head_from_spec({"distance": "nope"}, 5, 7)


GOOD_SPECS = [{"distance": "baseline"}, {"distance": "baseline", "bias": False}]
GOOD_SPECS += [{"distance": name} for name in distance_names()]
GOOD_SPECS += [{"distance": "minkowski", "p": 3, "n": 28}, {"distance": "hamming_hard", "T": 0.5, "threshold": -1}]
GOOD_SPECS += [{"distance": "cosine_softmax", "temperature": 0.1}, {"distance": "cosine_linear"}]
BAD_SPECS = [
    {"distance": "nope"},
    {"distance": "minkowski", "p": 0},
    {"distance": "euclidean", "eps": -1},
    {"distance": "euclidean", "n": 0},
    {"distance": "cosine", "p": 3},
    {"distance": "baseline", "n": 2},
    {"distance": "hamming_soft", "T": 0},
    {"distance": "hamming_gumbel", "noise": -0.5},
    {"distance": "cosine_softmax", "temperature": 0},
    {"distance": "cosine_linear", "n": 2},
    {"n": 2},
]


def test_resolve_accepts_good_specs_and_rejects_bad_ones():
    for spec in GOOD_SPECS:
        resolve_head_spec(resolve_head_spec(spec))  # resolved specs stay valid
    for spec in BAD_SPECS:
        with pytest.raises(ValueError):
            resolve_head_spec(spec)
