"""One registry of pairwise distances d(x, w) between inputs x (N x D) and class centres w (C x D).

Every distance is one small class: its name, its parameters (defaults and allowed range), whether it is
"matmul-type" (computable from a GEMM, never materialising an N x C x D tensor), the pairwise function, and which
fused-kernel family of harmonic.kernels serves it with what operands (kernel, kernel_operands).
Tests, the config checks, the workflow grid, benchmarks and notebooks all read the names from here, so adding a
distance is adding one class below (and its reference in tests/unit/test_distances.py).

Formulas, costs and numerical care are described in docs/distances.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

# Memory budget (bytes) for the (N, chunk, D) broadcast of non-matmul distances. Chunks over C are sized so one
# chunk's temporaries stay under it; with autograd on, each chunk is recomputed in backward (checkpointing) so the
# budget also holds for training.
BROADCAST_BYTES_BUDGET = 256 * 2**20
# Temporaries a broadcast chunk creates per element (diff, abs, ratio...): used to size chunks conservatively.
_BROADCAST_TEMPORARIES = 4
# Floor under squared distances before the square root: sqrt'(0) is infinite, so x exactly on a centre would give
# NaN gradients (0 * inf). Below the floor the gradient is 0; the floor's own sqrt (1e-15) is far below any eps.
SQRT_FLOOR = 1e-30
# Guard for denominators and norms (cosine, canberra, bray-curtis) and for the Minkowski/Chebyshev rescaling.
TINY = 1e-30


# --------------------------------------------------------------------------------------------------------------
# Parameters and the registry


@dataclass(frozen=True)
class Param:
    """A scalar parameter of a distance (or of a head), with its default and allowed range."""

    name: str
    default: float
    minimum: float | None = None  # inclusive
    exclusive_minimum: float | None = None
    maximum: float | None = None  # inclusive
    doc: str = ""

    def range_text(self) -> str:
        parts = []
        if self.exclusive_minimum is not None:
            parts.append(f"> {self.exclusive_minimum:g}")
        if self.minimum is not None:
            parts.append(f">= {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"<= {self.maximum:g}")
        return " and ".join(parts) if parts else "any finite number"

    def validate(self, owner: str, value) -> float:
        """Return value as float, or raise ValueError naming owner, key, value and allowed range."""
        bad = isinstance(value, bool) or not isinstance(value, (int, float))
        if not bad:
            number = float(value)
            bad = (
                not math.isfinite(number)
                or (self.exclusive_minimum is not None and number <= self.exclusive_minimum)
                or (self.minimum is not None and number < self.minimum)
                or (self.maximum is not None and number > self.maximum)
            )
        if bad:
            raise ValueError(f"{owner}: parameter '{self.name}' must be a number {self.range_text()} (got {value!r})")
        return number


@dataclass(frozen=True)
class KernelOperands:
    """What a fused kernel of harmonic.kernels computes a distance from: a kernel family ("matmul": a function of one
    dot product per pair, on tensor cores; "l1": elementwise, on CUDA cores), a kind within it (a key of that family
    module's KINDS), operands a (N x D) and b (C x D), optional per-row / per-centre terms aa (N) and bb (C) (sums,
    or chebyshev_smooth's detached maxima), and the kind's constants. Built with ordinary torch ops, so autograd
    carries the gradient through them."""

    family: str
    kind: str
    a: Tensor
    b: Tensor
    aa: Tensor | None = None
    bb: Tensor | None = None
    p: float = 1.0
    alpha: float = 1.0
    scale: float = 1.0


class Distance:
    """Base class. Subclasses set name/params/matmul_type and implement compute(x, w, training, **params).

    compute receives x (N x D) and w (C x D) already validated, and the scalar params with defaults filled in.
    A distance with a fused kernel sets `kernel` (its family) and implements kernel_operands.
    """

    name: str = ""
    params: tuple[Param, ...] = ()
    matmul_type: bool = False
    # Tensor-valued keyword arguments pairwise() accepts besides the scalar params (e.g. mahalanobis matrix=).
    tensor_args: tuple[str, ...] = ()
    # Forward FLOPs per (row, centre, feature) of the elementwise N x C x D broadcast; 0 when the distance is
    # computed by matrix products only (those FlopCounterMode counts). See head_train_flops.
    broadcast_flops: int = 0
    # The fused-kernel family that serves it ("matmul" | "l1"), or None: the reference path (pairwise) only.
    kernel: str | None = None

    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.params}

    def resolve(self, params: dict) -> dict[str, float]:
        """Validate scalar params and fill in defaults. Unknown keys -> ValueError listing the allowed ones."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            allowed = ", ".join(sorted(known)) or "none"
            raise ValueError(f"{self.name}: unknown parameter(s) {unknown}; allowed: {allowed}")
        return {name: p.validate(self.name, params.get(name, p.default)) for name, p in known.items()}

    def compute(self, x: Tensor, w: Tensor, training: bool, **params) -> Tensor:
        raise NotImplementedError

    def kernel_covers(self, params: dict) -> bool:
        """False for resolved params the kernel does not handle (those cases take the reference path)."""
        return True

    def kernel_operands(
        self, x: Tensor, w: Tensor, params: dict, factor: Tensor | None, training: bool, dtype: torch.dtype
    ) -> KernelOperands:
        """Reduce the distance to its kernel's kind. x (N x D), w (C x D); params resolved; factor: the tensor
        argument (mahalanobis factor L or diagonal m) or None; dtype: the tensor-core operand type for "matmul"."""
        raise NotImplementedError(f"{self.name}: no fused kernel")


_REGISTRY: dict[str, Distance] = {}


def register(cls: type[Distance]) -> type[Distance]:
    """Class decorator: add one instance of the distance to the registry (registration order = listing order)."""
    assert cls.name and cls.name not in _REGISTRY and cls.name != "baseline", cls.name
    _REGISTRY[cls.name] = cls()
    return cls


def distance_names() -> list[str]:
    """All registered distance names, in registry order ("baseline" is a head, not a distance)."""
    return list(_REGISTRY)


def get_distance(name: str) -> Distance:
    """The registry entry for name; unknown names -> ValueError listing the valid ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown distance {name!r}; valid names: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def is_matmul_type(name: str) -> bool:
    return get_distance(name).matmul_type


def head_train_flops(name: str, rows: int, centres: int, dim: int) -> int:
    """FLOPs of a training step's elementwise broadcast (forward + backward ~ 3 x forward), which counters of matrix
    products (torch.utils.flop_counter) do not see. Matrix-product distances return 0: they are counted there."""
    return 3 * get_distance(name).broadcast_flops * rows * centres * dim


def pairwise(name: str, x: Tensor, w: Tensor, *, training: bool = False, **params) -> Tensor:
    """Distances between every row of x (..., D) and every row of w (C x D) -> (..., C), all >= 0.

    params are the distance's scalar parameters (e.g. p=3 for minkowski) and, for mahalanobis, a fixed
    matrix=M or factor=L (M = L L^T); for mahalanobis_diagonal, diagonal=m (M = diag(m)).
    training=True turns on the noise of hamming_gumbel (as nn.Module.training does inside a head).
    Matmul-type distances are returned in float32 for half-precision inputs (fp32 accumulation).
    """
    dist = get_distance(name)
    tensors = {k: params.pop(k) for k in list(params) if k in dist.tensor_args}
    scalars = dist.resolve(params)
    if x.dim() < 1 or w.dim() != 2:
        raise ValueError(
            f"{name}: expected x of shape (..., D) and w of shape (C, D), got {tuple(x.shape)} and {tuple(w.shape)}"
        )
    if x.shape[-1] != w.shape[-1]:
        raise ValueError(f"{name}: mismatched D: x has D={x.shape[-1]} features but w has D={w.shape[-1]}")
    lead = x.shape[:-1]
    d = dist.compute(x.reshape(-1, x.shape[-1]), w, training, **tensors, **scalars)
    return d.reshape(*lead, w.shape[0])


# --------------------------------------------------------------------------------------------------------------
# Helpers


def _accumulation_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 stays float64 (gradcheck); everything else is computed in float32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _safe_sqrt(squared: Tensor) -> Tensor:
    """sqrt of max(squared, SQRT_FLOOR): clamps the tiny negative values GEMM cancellation can give, and keeps the
    gradient finite (0 below the floor) for x exactly on a centre."""
    return squared.clamp_min(SQRT_FLOOR).sqrt()


def _squared_euclidean_gemm(x: Tensor, w: Tensor) -> Tensor:
    """||x||^2 + ||w||^2 - 2 x.w via one GEMM (addmm) in fp32 (or fp64). Not clamped: may be slightly negative
    from cancellation; _safe_sqrt clamps. Only N x C tensors are created."""
    dtype = _accumulation_dtype(x, w)
    x, w = x.to(dtype), w.to(dtype)
    norms = (x * x).sum(-1, keepdim=True) + (w * w).sum(-1)
    return torch.addmm(norms, x, w.t(), alpha=-2.0)


def _broadcast_chunked(fn, x: Tensor, w: Tensor, *extra: Tensor) -> Tensor:
    """Apply fn(x[:, None, :], w_chunk[None], *extra_chunk) -> (N, chunk) over chunks of C within the memory budget.

    extra tensors are per-centre (first dim C) and are chunked alongside w. With autograd on and more than one
    chunk, each chunk is checkpointed so its (N, chunk, D) temporaries are not kept for backward.
    """
    n, dim = x.shape
    c = w.shape[0]
    per_centre = max(1, n * dim * x.element_size() * _BROADCAST_TEMPORARIES)
    chunk = max(1, min(c, BROADCAST_BYTES_BUDGET // per_centre))
    if chunk >= c:
        return fn(x, w, *extra)
    grad_on = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or any(e.requires_grad for e in extra))
    parts = []
    for start in range(0, c, chunk):
        args = (x, w[start : start + chunk], *(e[start : start + chunk] for e in extra))
        parts.append(checkpoint(fn, *args, use_reentrant=False) if grad_on else fn(*args))
    return torch.cat(parts, dim=1)


def _abs_diff(x: Tensor, w: Tensor) -> Tensor:
    """|x_i - w_j| as an (N, C, D) tensor (only ever called on a chunk of centres)."""
    return (x[:, None, :] - w[None, :, :]).abs()


def _upcast_half(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Broadcast distances sum over D: do it in float32 when inputs are fp16/bf16."""
    dtype = _accumulation_dtype(*tensors)
    return tuple(t.to(dtype) if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors)


# --------------------------------------------------------------------------------------------------------------
# The distances, in registry order (matmul_type = True marks the GEMM ones)


@register
class Euclidean(Distance):
    """L2: sqrt(||x||^2 + ||w||^2 - 2 x.w), clamped at 0, safe sqrt."""

    name = "euclidean"
    matmul_type = True
    kernel = "matmul"

    def compute(self, x, w, training):
        return _safe_sqrt(_squared_euclidean_gemm(x, w))

    def kernel_operands(self, x, w, params, factor, training, dtype):
        # aa = |a|^2, bb = |b|^2 are computed inside the kernel's autograd Function, which also adds their gradient
        return KernelOperands("matmul", "euclid", x.to(dtype), w.to(dtype))


@register
class Manhattan(Distance):
    """L1: sum_k |x_k - w_k|."""

    name = "manhattan"
    broadcast_flops = 3  # sub, abs, sum
    kernel = "l1"

    def compute(self, x, w, training):
        x, w = _upcast_half(x, w)
        return _broadcast_chunked(lambda a, b: _abs_diff(a, b).sum(-1), x, w)

    def kernel_operands(self, x, w, params, factor, training, dtype):
        return KernelOperands("l1", "manhattan", x, w)


@register
class Minkowski(Distance):
    """(sum_k |x_k - w_k|^p)^(1/p), rescaled by the largest |x_k - w_k| so large norms or p do not overflow."""

    name = "minkowski"
    broadcast_flops = 6  # sub, abs, max, divide, pow, sum
    params = (Param("p", 2.0, exclusive_minimum=0.0, doc="order of the norm (p=1 manhattan, p=2 euclidean)"),)
    kernel = "l1"
    # The kernel's range of p: below 1 the gradient is singular at 0; above 8 |u|^p can underflow in fp32.
    kernel_p_range = (1.0, 8.0)

    def compute(self, x, w, training, p):
        x, w = _upcast_half(x, w)

        def fn(a, b):
            diff = _abs_diff(a, b)
            # d = m * (sum (|diff|/m)^p)^(1/p) for any constant m > 0; m = max|diff| keeps every term <= 1.
            # m is detached: the identity holds for any m, so treating it as constant gives the exact gradient.
            scale = diff.detach().amax(-1, keepdim=True).clamp_min(TINY)
            # clamp_min keeps pow's gradient finite at diff = 0 for p < 1 (gradient 0 there).
            total = (diff / scale).clamp_min(TINY).pow(p).sum(-1)
            return scale.squeeze(-1) * total.clamp_min(TINY).pow(1.0 / p)

        return _broadcast_chunked(fn, x, w)

    def kernel_covers(self, params):
        return self.kernel_p_range[0] <= params["p"] <= self.kernel_p_range[1]

    def kernel_operands(self, x, w, params, factor, training, dtype):
        p = params["p"]
        if p == 2.0:  # identical function; the GEMM form is ~20x cheaper than CUDA-core tiles
            return get_distance("euclidean").kernel_operands(x, w, {}, None, training, dtype)
        if p == 1.0:
            return KernelOperands("l1", "manhattan", x, w)
        # d(x, w) = c d(x / c, w / c): a power-of-two c (exact in any dtype) keeps every |u| <= 2 so |u|^p cannot
        # overflow; c is a constant, so the gradient is unchanged.
        largest = max(float(x.detach().abs().max()), float(w.detach().abs().max()), TINY)
        scale = 2.0 ** math.ceil(math.log2(largest))
        return KernelOperands("l1", "minkowski", x / scale, w / scale, p=float(p), scale=float(scale))


@register
class Chebyshev(Distance):
    """True L-infinity: max_k |x_k - w_k|."""

    name = "chebyshev"
    broadcast_flops = 3  # sub, abs, max
    kernel = "l1"

    def compute(self, x, w, training):
        x, w = _upcast_half(x, w)
        return _broadcast_chunked(lambda a, b: _abs_diff(a, b).amax(-1), x, w)

    def kernel_operands(self, x, w, params, factor, training, dtype):
        return KernelOperands("l1", "chebyshev", x, w)


@register
class ChebyshevSmooth(Distance):
    """(1/alpha) log sum_k exp(alpha |x_k - w_k|): smooth upper bound of L-infinity, within log(D)/alpha of it."""

    name = "chebyshev_smooth"
    broadcast_flops = 6  # sub, abs, scale, exp and the logsumexp's max and sum
    params = (Param("alpha", 10.0, exclusive_minimum=0.0, doc="sharpness; alpha -> inf gives chebyshev"),)
    kernel = "l1"

    def compute(self, x, w, training, alpha):
        x, w = _upcast_half(x, w)
        return _broadcast_chunked(lambda a, b: torch.logsumexp(alpha * _abs_diff(a, b), dim=-1) / alpha, x, w)

    def kernel_operands(self, x, w, params, factor, training, dtype):
        # aa, bb: max_k |x_k| and max_k |w_k|, detached: where alpha (max |x| + max |w|) / ln 2 leaves room in fp32,
        # the CUDA forward sums each exponential as a product of per-operand factors in one sweep
        aa, bb = (t.detach().abs().amax(-1).float() for t in (x, w))
        return KernelOperands("l1", "smooth", x, w, aa=aa, bb=bb, alpha=float(params["alpha"]))


@register
class Cosine(Distance):
    """1 - x.w / (||x|| ||w||), clamped to [0, 2]; zero vectors are treated as having norm TINY (distance 1)."""

    name = "cosine"
    matmul_type = True
    kernel = "matmul"

    def compute(self, x, w, training):
        dtype = _accumulation_dtype(x, w)
        x_unit = F.normalize(x.to(dtype), dim=-1, eps=TINY)
        w_unit = F.normalize(w.to(dtype), dim=-1, eps=TINY)
        return (1.0 - x_unit @ w_unit.t()).clamp(0.0, 2.0)

    def kernel_operands(self, x, w, params, factor, training, dtype):
        # the normalisation (and its gradient) happens inside the kernel's autograd Function
        return KernelOperands("matmul", "cosine", x.to(dtype), w.to(dtype))


def _canberra_bound(t: torch.Tensor) -> torch.Tensor:
    """min_k |t_k| of each row where its max_k |t_k| <= 2^39, else -1 (also for NaN): the range the CUDA canberra
    forward's one-reciprocal-per-two-features sweep needs (l1_kernels.cuh's canberra_tile_in_range)."""
    mag = t.detach().abs().float()
    return torch.where(mag.amax(-1) <= 2.0**39, mag.amin(-1), -1.0)


@register
class Canberra(Distance):
    """sum_k |x_k - w_k| / (|x_k| + |w_k|), terms with 0/0 count 0 (as scipy)."""

    name = "canberra"
    broadcast_flops = 7  # sub, abs, two abs, add, divide, sum
    kernel = "l1"

    def compute(self, x, w, training):
        x, w = _upcast_half(x, w)

        def fn(a, b):
            num = _abs_diff(a, b)
            den = a.abs()[:, None, :] + b.abs()[None, :, :]
            # den = 0 only when both are 0, and then num = 0: the 0/0 term counts 0.
            return (num / torch.where(den > 0, den, torch.ones_like(den))).sum(-1)

        return _broadcast_chunked(fn, x, w)

    def kernel_operands(self, x, w, params, factor, training, dtype):
        # aa, bb: per row / centre, min_k |v_k| where max_k |v_k| <= 2^39, else -1 (detached): where every pair of
        # a tile is within range, the CUDA forward adds two features' terms with one reciprocal
        aa, bb = (_canberra_bound(t) for t in (x, w))
        return KernelOperands("l1", "canberra", x, w, aa=aa, bb=bb)


@register
class BrayCurtis(Distance):
    """sum_k |x_k - w_k| / sum_k |x_k + w_k| (scipy's braycurtis); 0/0 counts 0; x = -w divides by TINY."""

    name = "bray_curtis"
    broadcast_flops = 6  # sub, abs, sum; add, abs, sum
    kernel = "l1"

    def compute(self, x, w, training):
        x, w = _upcast_half(x, w)

        def fn(a, b):
            num = _abs_diff(a, b).sum(-1)
            den = (a[:, None, :] + b[None, :, :]).abs().sum(-1)
            # den = 0: with num = 0 (x = w = 0) the ratio is 0; with num > 0 (x = -w) divide by TINY (huge, finite).
            # Dividing 0 by TINY would also give 0, but its gradient 1/TINY times -n/eps overflows float32.
            return num / torch.where(den > 0, den, torch.where(num > 0, TINY, 1.0))

        return _broadcast_chunked(fn, x, w)

    def kernel_operands(self, x, w, params, factor, training, dtype):
        return KernelOperands("l1", "braycurtis", x, w)


@register
class BrayCurtisAbs(Distance):
    """sum_k |x_k - w_k| / (sum_k |x_k| + sum_k |w_k|), in [0, 1]; 0/0 counts 0."""

    name = "bray_curtis_abs"
    broadcast_flops = 3  # sub, abs, sum
    kernel = "l1"

    def compute(self, x, w, training):
        x, w = _upcast_half(x, w)
        num = _broadcast_chunked(lambda a, b: _abs_diff(a, b).sum(-1), x, w)
        den = x.abs().sum(-1, keepdim=True) + w.abs().sum(-1)  # separable: no broadcast needed
        return num / torch.where(den > 0, den, torch.ones_like(den))  # den = 0 implies num = 0: 0/0 counts 0

    def kernel_operands(self, x, w, params, factor, training, dtype):
        # aa, bb are detached: the kernels add the denominator's gradient to dx, dW themselves, in fp32, before the
        # cast to the inputs' dtype (two bf16-rounded gradients added in bf16 lost ~3e-3 to cancellation).
        x32, w32 = x.detach().float(), w.detach().float()
        return KernelOperands("l1", "brayabs", x, w, aa=x32.abs().sum(-1), bb=w32.abs().sum(-1))


@register
class Mahalanobis(Distance):
    """sqrt((x - w) M (x - w)^T) with M = L L^T positive semi-definite; L = I (euclidean) unless given.

    With factor=L: || x L - w L ||_2 (two GEMMs then the euclidean expansion). With matrix=M (symmetric PSD):
    x M x^T + w M w^T - 2 x M w^T. Inside HarmonicHead, L is a trainable lower-triangular parameter.
    """

    name = "mahalanobis"
    matmul_type = True
    tensor_args = ("matrix", "factor")
    kernel = "matmul"  # with the factor L only (the head's form), not matrix=

    def compute(self, x, w, training, matrix=None, factor=None):
        if matrix is not None and factor is not None:
            raise ValueError("mahalanobis: give matrix= or factor=, not both")
        dim = x.shape[-1]
        given = matrix if matrix is not None else factor
        if given is not None and tuple(given.shape) != (dim, dim):
            which = "matrix" if matrix is not None else "factor"
            raise ValueError(f"mahalanobis: {which} must have shape ({dim}, {dim}), got {tuple(given.shape)}")
        if factor is not None:
            dtype = _accumulation_dtype(x, w, factor)
            factor = factor.to(dtype)
            return _safe_sqrt(_squared_euclidean_gemm(x.to(dtype) @ factor, w.to(dtype) @ factor))
        if matrix is not None:
            dtype = _accumulation_dtype(x, w, matrix)
            x, w, matrix = x.to(dtype), w.to(dtype), matrix.to(dtype)
            xm, wm = x @ matrix, w @ matrix
            norms = (xm * x).sum(-1, keepdim=True) + (wm * w).sum(-1)
            return _safe_sqrt(torch.addmm(norms, xm, w.t(), alpha=-2.0))
        return _safe_sqrt(_squared_euclidean_gemm(x, w))

    def kernel_operands(self, x, w, params, factor, training, dtype):
        if factor is not None:
            dim = x.shape[1]
            if tuple(factor.shape) != (dim, dim):
                raise ValueError(f"mahalanobis: factor must have shape ({dim}, {dim}), got {tuple(factor.shape)}")
            x, w = x.float() @ factor.float(), w.float() @ factor.float()
        return KernelOperands("matmul", "euclid", x.to(dtype), w.to(dtype))


@register
class MahalanobisDiagonal(Distance):
    """sqrt(sum_k m_k (x_k - w_k)^2) with M = diag(m), m = exp(s) >= 0; m = 1 (euclidean) unless diagonal= given."""

    name = "mahalanobis_diagonal"
    matmul_type = True
    tensor_args = ("diagonal",)
    kernel = "matmul"

    def compute(self, x, w, training, diagonal=None):
        if diagonal is None:
            return _safe_sqrt(_squared_euclidean_gemm(x, w))
        if tuple(diagonal.shape) != (x.shape[-1],):
            raise ValueError(
                f"mahalanobis_diagonal: diagonal must have shape ({x.shape[-1]},), got {tuple(diagonal.shape)}"
            )
        dtype = _accumulation_dtype(x, w, diagonal)
        root = diagonal.to(dtype).clamp_min(0.0).sqrt()
        return _safe_sqrt(_squared_euclidean_gemm(x.to(dtype) * root, w.to(dtype) * root))

    def kernel_operands(self, x, w, params, factor, training, dtype):
        if factor is not None:
            dim = x.shape[1]
            if tuple(factor.shape) != (dim,):
                raise ValueError(
                    f"mahalanobis_diagonal: diagonal must have shape ({dim},), got {tuple(factor.shape)}"
                )
            root = factor.float().clamp_min(0.0).sqrt()
            x, w = x.float() * root, w.float() * root
        return KernelOperands("matmul", "euclid", x.to(dtype), w.to(dtype))


# --------------------------------------------------------------------------------------------------------------
# Hamming family: soft bits b = sigmoid(v / T); distances are the mean over D (fraction of differing bits, as scipy).


def _soft_hamming(bits_x: Tensor, bits_w: Tensor) -> Tensor:
    return _broadcast_chunked(lambda a, b: _abs_diff(a, b).mean(-1), bits_x, bits_w)


@register
class HammingSoft(Distance):
    """mean_k |sigmoid(x_k / T) - sigmoid(w_k / T)|."""

    name = "hamming_soft"
    broadcast_flops = 3  # sub, abs, sum on the bits
    params = (Param("T", 1.0, exclusive_minimum=0.0, doc="temperature of the sigmoid bits"),)
    kernel = "l1"

    def compute(self, x, w, training, T):
        x, w = _upcast_half(x, w)
        return _soft_hamming(torch.sigmoid(x / T), torch.sigmoid(w / T))

    def kernel_operands(self, x, w, params, factor, training, dtype):
        return _soft_bits_operands(x.float(), w.float(), params["T"])


@register
class HammingGumbel(Distance):
    """hamming_soft on Gumbel-sigmoid bits sigmoid((v + noise * (g1 - g2)) / T) while training; soft bits in eval.

    g1 - g2 of two Gumbel(0, 1) draws is Logistic(0, 1) noise, drawn independently for x and for the centres. The
    noise is on the scale of v, so it must be small against the values it perturbs: with noise = 1 and centres at
    nn.Linear's init scale (|w| ~ 0.03) every centre bit is a coin flip and training accuracy stays at chance on
    MNIST; the default 0.1 keeps the bits informative (docs/distances.md).
    """

    name = "hamming_gumbel"
    broadcast_flops = 3  # sub, abs, sum on the bits
    params = (
        Param("T", 1.0, exclusive_minimum=0.0, doc="temperature of the sigmoid bits"),
        Param("noise", 0.1, minimum=0.0, doc="scale of the logistic (Gumbel difference) noise on v, in training"),
    )
    kernel = "l1"  # its training noise drawn here with torch, as compute draws it, then the bits as hamming_soft

    def compute(self, x, w, training, T, noise):
        x, w = _upcast_half(x, w)
        if training and noise > 0:
            x = x + noise * _logistic_noise(x)
            w = w + noise * _logistic_noise(w)
        return _soft_hamming(torch.sigmoid(x / T), torch.sigmoid(w / T))

    def kernel_operands(self, x, w, params, factor, training, dtype):
        a, b = x.float(), w.float()
        if training and params["noise"] > 0:
            a = a + params["noise"] * _logistic_noise(a)
            b = b + params["noise"] * _logistic_noise(b)
        return _soft_bits_operands(a, b, params["T"])


def _soft_bits_operands(a: Tensor, b: Tensor, T: float) -> KernelOperands:
    """The l1 kernel's manhattan kind on sigmoid bits, as a mean over D (hamming_soft, hamming_gumbel)."""
    return KernelOperands("l1", "manhattan", torch.sigmoid(a / T), torch.sigmoid(b / T), scale=1.0 / a.shape[1])


def _logistic_noise(like: Tensor) -> Tensor:
    u = torch.rand_like(like).clamp(1e-6, 1.0 - 1e-6)
    return torch.log(u) - torch.log1p(-u)


@register
class HammingHard(Distance):
    """Fraction of differing bits (v > threshold), with a straight-through gradient through sigmoid((v - threshold)/T).

    For bits b in {0, 1}, |bx - bw| = bx + bw - 2 bx bw, so the distance is one GEMM and the straight-through
    gradient flows even where the bits agree (|.|' would be 0 there).
    """

    name = "hamming_hard"
    params = (
        Param("T", 1.0, exclusive_minimum=0.0, doc="temperature of the surrogate sigmoid (gradient only)"),
        Param("threshold", 0.0, doc="a component is bit 1 when it is > threshold"),
    )
    kernel = "matmul"

    def compute(self, x, w, training, T, threshold):
        dtype = _accumulation_dtype(x, w)
        bx = _straight_through_bits(x.to(dtype), T, threshold)
        bw = _straight_through_bits(w.to(dtype), T, threshold)
        ones = torch.addmm(bx.sum(-1, keepdim=True) + bw.sum(-1), bx, bw.t(), alpha=-2.0)
        return ones.clamp_min(0.0) / x.shape[-1]

    def kernel_operands(self, x, w, params, factor, training, dtype):
        bits_x = _straight_through_bits(x.float(), params["T"], params["threshold"])
        bits_w = _straight_through_bits(w.float(), params["T"], params["threshold"])
        aa, bb = bits_x.sum(-1), bits_w.sum(-1)
        return KernelOperands("matmul", "linear", bits_x.to(dtype), bits_w.to(dtype), aa, bb, scale=1.0 / x.shape[1])


def _straight_through_bits(v: Tensor, T: float, threshold: float) -> Tensor:
    soft = torch.sigmoid((v - threshold) / T)
    hard = (v > threshold).to(v.dtype)
    return hard + (soft - soft.detach())
