"""Classification heads: HarmonicHead (distance + HarMax) and the cross-entropy baseline behind the same interface,
plus the two cosine heads of Miller-Golub et al.'s language models (COSINE_HEADS: logits from cos, no exponent).

A head spec is a dict {distance: <registry name or "baseline">, n: <exponent on d>, eps: ..., <distance params>}.
resolve_head_spec fills defaults and validates (the workflow checks config head specs with it, not with a schema),
head_label makes a short path/plot label, head_from_spec builds the module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harmonic.distances import Param, distance_names, get_distance, pairwise
from harmonic.harmax import DEFAULT_EPS, check_harmax_args, harmax_logits

BASELINE = "baseline"
# fused="auto": matmul-type heads with fewer (row, class) pairs than this take the reference path on CUDA too. There
# one GEMM + cross_entropy is as fast, compiles into the model's graph, and its N x V logits are small (4M pairs =
# 16 MB in fp32); language-model heads (16k tokens x 50k classes) are 200x larger.
FUSED_MIN_PAIRS = 2**22

# Floor under cosine_linear's similarity before the log, as the original clamped it (docs/deviations.md (language models)).
COSINE_LINEAR_FLOOR = 1e-8


@dataclass(frozen=True)
class CosineHead:
    """A head whose logits are a function of the cosine similarity instead of -n log d: Miller-Golub et al.'s
    language-model "cosine" heads, named for what they compute (their names in docs/deviations.md (language models))."""

    params: tuple[Param, ...]
    logits: Callable[[Tensor, dict], Tensor]
    doc: str


COSINE_HEADS = {
    "cosine_softmax": CosineHead(
        (Param("temperature", 1.0, exclusive_minimum=0.0, doc="logits = cos / temperature"),),
        lambda cos, p: cos / p["temperature"],
        "p = softmax(cos / temperature): a cosine classifier (their cosine_temp_scale_<T>)",
    ),
    "cosine_linear": CosineHead(
        (),
        lambda cos, p: torch.log(((1.0 + cos) / 2.0).clamp_min(COSINE_LINEAR_FLOOR)),
        "p_i = s_i / sum_j s_j with s = (1 + cos) / 2, normalised linearly (their cosine_simple)",
    ),
}

# Parameters every harmonic head has besides its distance's own.
HARMAX_PARAMS = (
    Param("n", 1.0, exclusive_minimum=0.0, doc="harmonic exponent on d (paper form: p ~ d^-n)"),
    Param("eps", DEFAULT_EPS, minimum=0.0, doc="added to d before the log"),
)


class HarmonicHead(nn.Module):
    """logits = -n log(d(x, centres) + eps), so F.cross_entropy(head(x), y) is the harmonic loss and argmax is the
    nearest centre. distance="baseline" is an ordinary Linear (with bias unless bias=False): logits = x W^T + b.

    .centres is the C x D weight: a Parameter of its own, or tied_weight (the same Parameter, shared storage, as a
    language model's token embedding). Mahalanobis heads own their metric: a lower-triangular factor L (M = L L^T)
    or a log-diagonal s (M = diag(exp(s))), both initialised to the identity.
    x may have leading dimensions (..., D) -> logits (..., C). Harmonic logits are float32 (float64 for float64 x).
    The COSINE_HEADS (cosine_softmax, cosine_linear) have no n: their logits are a function of cos(x, centres).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        distance: str = "euclidean",
        n: float = 1.0,
        eps: float = DEFAULT_EPS,
        tied_weight: nn.Parameter | None = None,
        bias: bool | None = None,
        **params,
    ):
        super().__init__()
        if in_features < 1 or num_classes < 1:
            raise ValueError(f"in_features and num_classes must be >= 1 (got {in_features}, {num_classes})")
        if tied_weight is not None and tuple(tied_weight.shape) != (num_classes, in_features):
            raise ValueError(
                f"tied_weight has shape {tuple(tied_weight.shape)}, expected (num_classes, in_features) = "
                f"({num_classes}, {in_features})"
            )
        _check_head_distance(distance)
        self.in_features, self.num_classes, self.distance = in_features, num_classes, distance
        if distance == BASELINE:
            if params:
                raise ValueError(f"baseline: unknown parameter(s) {sorted(params)}; allowed: bias")
            self.n, self.eps, self.params = None, None, {}
            self.linear = nn.Linear(in_features, num_classes, bias=True if bias is None else bias)
            if tied_weight is not None:
                self.linear.weight = tied_weight
            return
        if bias is not None:
            raise ValueError(f"{distance}: 'bias' applies only to the baseline head")
        if distance in COSINE_HEADS:  # no exponent: the logits are a function of the cosine
            self.n, self.eps = None, None
            self.params = _resolve_params(distance, COSINE_HEADS[distance].params, params)
        else:
            check_harmax_args(n, eps)
            self.n, self.eps = float(n), float(eps)
            self.params = get_distance(distance).resolve(params)
        if tied_weight is not None:
            self.weight = tied_weight
        else:
            # Centres start like nn.Linear weights (|w| ~ 1/sqrt(D)). HarMax is invariant to scaling d, but not every
            # distance is invariant to the scale of the centres: hamming_gumbel's bits sigmoid((w + noise L) / T)
            # would be pure noise at |w| ~ 0.03 (training accuracy at chance), so its centres start at the scale T.
            self.weight = nn.Parameter(torch.empty(num_classes, in_features))
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
            if distance == "hamming_gumbel":
                nn.init.normal_(self.weight, std=self.params["T"])
        if distance == "mahalanobis":
            self.factor_raw = nn.Parameter(torch.eye(in_features))  # only its lower triangle is used
        elif distance == "mahalanobis_diagonal":
            self.log_diagonal = nn.Parameter(torch.zeros(in_features))

    @property
    def centres(self) -> nn.Parameter:
        return self.linear.weight if self.distance == BASELINE else self.weight

    def metric_tensors(self) -> dict[str, Tensor]:
        """The head's learned metric as pairwise() keyword arguments (empty for non-mahalanobis heads)."""
        if self.distance == "mahalanobis":
            return {"factor": torch.tril(self.factor_raw)}
        if self.distance == "mahalanobis_diagonal":
            return {"diagonal": self.log_diagonal.exp()}
        return {}

    def distances(self, x: Tensor) -> Tensor:
        """d(x, centres): (..., D) -> (..., C)."""
        if self.distance == BASELINE:
            raise ValueError("baseline head has no distances")
        if self.distance in COSINE_HEADS:
            return pairwise("cosine", x, self.weight)
        return pairwise(self.distance, x, self.weight, training=self.training, **self.metric_tensors(), **self.params)

    def forward(self, x: Tensor) -> Tensor:
        if self.distance == BASELINE:
            return self.linear(x)
        if self.distance in COSINE_HEADS:
            return COSINE_HEADS[self.distance].logits(1.0 - self.distances(x), self.params)
        return harmax_logits(self.distances(x), self.n, self.eps)

    def loss(
        self,
        x: Tensor,
        y: Tensor,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        fused: bool | str = "auto",
    ) -> Tensor:
        """F.cross_entropy(self(x), y, ...) over flattened leading dims; on CUDA the fused kernel when it pays.

        fused="auto": harmonic.kernels when uses_fused_kernel says so (CUDA, a supported distance, and for
        matmul-type distances at least FUSED_MIN_PAIRS row-class pairs); fused=True always calls the kernels;
        fused=False always takes the reference path. The baseline never uses a kernel.
        """
        if fused not in (True, False, "auto"):
            raise ValueError(f"fused must be True, False or 'auto' (got {fused!r})")
        rows = x.numel() // max(x.shape[-1], 1)
        if self.distance not in (BASELINE, *COSINE_HEADS) and (
            fused is True or (fused == "auto" and uses_fused_kernel(self.distance, rows, self.num_classes, x.device))
        ):
            from harmonic import kernels

            metric = self.metric_tensors()
            return kernels.fused_harmonic_loss(
                x,
                self.weight,
                y,
                distance=self.distance,
                n=self.n,
                eps=self.eps,
                params=dict(self.params),
                factor=metric.get("factor", metric.get("diagonal")),
                ignore_index=ignore_index,
                label_smoothing=label_smoothing,
                reduction=reduction,
                training=self.training,
            )
        logits = self(x)
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            y.reshape(-1),
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            reduction=reduction,
        )

    def extra_repr(self) -> str:
        text = f"in_features={self.in_features}, num_classes={self.num_classes}, distance={self.distance!r}"
        if self.n is not None:
            text += f", n={self.n:g}, eps={self.eps:g}"
        if self.distance != BASELINE:
            text += "".join(f", {k}={v:g}" for k, v in self.params.items())
        return text


def uses_fused_kernel(distance: str, rows: int, num_classes: int, device) -> bool:
    """fused="auto"'s choice: the kernel on CUDA when it supports the distance, except for small matmul-type heads
    (rows x classes < FUSED_MIN_PAIRS). Elementwise distances always take it there: their reference path
    broadcasts (rows, chunk, D) and is slower at every size."""
    if distance == BASELINE or torch.device(device).type != "cuda" or not _kernels_support(distance, device):
        return False
    return not get_distance(distance).matmul_type or rows * num_classes >= FUSED_MIN_PAIRS


def _kernels_support(distance: str, device: torch.device) -> bool:
    """True when the optional fused kernels import and support this distance on this device."""
    try:
        from harmonic import kernels
    except ImportError:
        return False
    return bool(kernels.supports(distance, device))


# --------------------------------------------------------------------------------------------------------------
# Head specs


def head_names() -> list[str]:
    """Every head a spec may name: the baseline, the registry's distances and the cosine heads."""
    return [BASELINE, *distance_names(), *COSINE_HEADS]


def _check_head_distance(name) -> None:
    if name not in head_names():
        raise ValueError(f"unknown distance {name!r}; valid names: {', '.join(head_names())}")


def _resolve_params(owner: str, declared: tuple[Param, ...], values: dict) -> dict[str, float]:
    unknown = sorted(set(values) - {p.name for p in declared})
    if unknown:
        allowed = ", ".join(p.name for p in declared) or "none"
        raise ValueError(f"{owner}: unknown parameter(s) {unknown}; allowed: {allowed}")
    return {p.name: p.validate(owner, values.get(p.name, p.default)) for p in declared}


def resolve_head_spec(spec: dict | str) -> dict:
    """A head spec with every default filled in, validated. A bare string is {distance: <string>}.

    Unknown distance -> ValueError listing the valid names; unknown key or out-of-range value -> ValueError naming
    the key, the value and the allowed range.
    """
    if isinstance(spec, str):
        spec = {"distance": spec}
    if not isinstance(spec, dict) or "distance" not in spec:
        raise ValueError(f"a head spec must be a dict with a 'distance' key (got {spec!r})")
    spec = dict(spec)
    name = spec.pop("distance")
    if name == BASELINE:
        unknown = sorted(set(spec) - {"bias"})
        if unknown:
            raise ValueError(f"baseline: unknown parameter(s) {unknown}; allowed: bias")
        bias = spec.get("bias", True)
        if not isinstance(bias, bool):
            raise ValueError(f"baseline: parameter 'bias' must be true or false (got {bias!r})")
        return {"distance": BASELINE, "bias": bias}
    _check_head_distance(name)
    if name in COSINE_HEADS:
        return {"distance": name, **_resolve_params(name, COSINE_HEADS[name].params, spec)}
    harmax = {p.name: p.validate(name, spec.pop(p.name, p.default)) for p in HARMAX_PARAMS}
    return {"distance": name, **get_distance(name).resolve(spec), **harmax}


def head_label(spec: dict | str) -> str:
    """Short label for paths and plots: the distance name, then each parameter that differs from its default as
    key+value, joined by '-': "baseline", "euclidean", "minkowski-p3", "chebyshev_smooth-alpha10", "euclidean-n28"."""
    spec = resolve_head_spec(spec)
    if spec["distance"] == BASELINE:
        return BASELINE if spec["bias"] else "baseline-nobias"
    defaults = {p.name: p.default for p in _declared_params(spec["distance"])}
    parts = [spec["distance"]]
    for key, value in spec.items():
        if key != "distance" and value != defaults[key]:
            parts.append(f"{key}{_format_number(value)}")
    return "-".join(parts)


def _declared_params(name: str) -> tuple[Param, ...]:
    if name in COSINE_HEADS:
        return COSINE_HEADS[name].params
    return (*HARMAX_PARAMS, *get_distance(name).params)


def _format_number(value: float) -> str:
    """3.0 -> "3", 1.5 -> "1.5", 27.712812921102035 -> "27.7128", 1e-06 -> "1e-06" (safe in paths)."""
    return f"{value:.6g}".replace("+", "")


def head_from_spec(
    spec: dict | str, in_features: int, num_classes: int, tied_weight: nn.Parameter | None = None
) -> HarmonicHead:
    """Build the head a spec describes (validated first)."""
    spec = resolve_head_spec(spec)
    name = spec.pop("distance")
    return HarmonicHead(in_features, num_classes, distance=name, tied_weight=tied_weight, **spec)
