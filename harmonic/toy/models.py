"""The toy models of Baek et al., each ending in a head: the CE baseline, a library harmonic head, or an ablation head.

Every model returns logits: for a harmonic head these are -n * log(d + eps), so plain cross-entropy on them is the
harmonic loss. The options below are what the two settings (harmonic/settings.py) switch; config.yaml and
presets/paper.yaml set them through `overrides`, and docs/deviations.md (toy) cites the original code for each.

- distance_power   1: HarMax on d (the paper's text); 2: HarMax on d^2, as the original DistLayer computes
                   (grow-crystals src/utils/model.py:357-359), so the exponent on d is 2n. The head's `n` is always
                   the one written in the config; the effective exponent on d is n * distance_power.
- embedding_init   how the MLP's tied embedding starts: "normal" N(0, 1) (nn.Embedding's default) or
                   "linear_uniform" U(+-1/sqrt(D)), which is what the original ran: its tied embedding IS the last
                   nn.Linear's weight (model.py:319, :395), so the N(0, 1/sqrt(D)) it draws first is discarded.
- transformer      "prenorm": pre-LN, GELU, no dropout, zero-initialised positions, a final LayerNorm, untied head.
                   "original": nn.TransformerEncoderLayer's defaults (post-LN, ReLU, dropout 0.1) with an extra
                   residual around each layer, N(0, 1) positions, embedding N(0, 1/D), no final norm; the CE head
                   is the tied embedding without bias, the harmonic head an untied DistLayer (model.py:421-461).
"""

import math

import torch
from torch import nn

import harmonic
from harmonic.heads import BASELINE

MODELS = ("mlp", "transformer")
EMBEDDING_INITS = ("normal", "linear_uniform")
TRANSFORMER_STYLES = ("prenorm", "original")
DISTANCE_POWERS = (1, 2)

# Heads of the ablation study (Baek et al. Sec. 6), named for what they compute. Not registry distances: they swap
# the normaliser (HarMax <-> softmax) rather than the distance, and the registry's distances reach every family.
#   euclidean_softmax  logits = -n * d(x, w): the l2 distance with an ordinary softmax (no scale invariance)
#   dot_harmax         p ~ s^n with s = softplus(x . w): HarMax applied to a positive dot-product similarity
ABLATION_HEADS = ("euclidean_softmax", "dot_harmax")


def resolve_toy_head(spec):
    """A head spec with defaults filled in: an ablation head ({distance, n}) or anything the library resolves."""
    if isinstance(spec, dict) and spec.get("distance") in ABLATION_HEADS:
        unknown = sorted(set(spec) - {"distance", "n"})
        if unknown:
            raise ValueError(f"{spec['distance']}: unknown parameter(s) {unknown}; allowed: n")
        n = spec.get("n", 1.0)
        if isinstance(n, bool) or not isinstance(n, (int, float)) or not 0 < n < math.inf:
            raise ValueError(f"{spec['distance']}: parameter 'n' must be a finite number > 0 (got {n!r})")
        return {"distance": spec["distance"], "n": float(n)}
    return harmonic.resolve_head_spec(spec)


def toy_head_label(spec):
    """Path/plot label: the library's label, or the ablation head's name (+ -n<value> when n != 1)."""
    spec = resolve_toy_head(spec)
    if spec["distance"] in ABLATION_HEADS:
        return spec["distance"] if spec["n"] == 1.0 else f"{spec['distance']}-n{spec['n']:g}"
    return harmonic.head_label(spec)


def effective_head(spec, distance_power=1):
    """The head spec the model is built with: n multiplied by distance_power (HarMax on d^2 = exponent 2n on d)."""
    spec = resolve_toy_head(spec)
    if distance_power not in DISTANCE_POWERS:
        raise ValueError(f"distance_power must be one of {DISTANCE_POWERS} (got {distance_power!r})")
    if spec["distance"] == BASELINE or spec["distance"] in ABLATION_HEADS:
        return spec
    return dict(spec, n=spec["n"] * distance_power)


def harmonic_exponent(spec, distance_power=1):
    """Effective exponent on d (paper form p ~ d^-n) of a harmonic head; None for the others."""
    spec = resolve_toy_head(spec)
    if spec["distance"] == BASELINE or spec["distance"] in ABLATION_HEADS:
        return None
    return effective_head(spec, distance_power)["n"]


class AblationHead(nn.Module):
    """One of ABLATION_HEADS; .weight holds the C x D centres / class vectors (tied or its own)."""

    def __init__(self, distance, in_features, num_classes, n=1.0, tied_weight=None):
        super().__init__()
        self.distance, self.n = distance, float(n)
        if tied_weight is not None:
            self.weight = tied_weight
        else:
            self.weight = nn.Parameter(torch.empty(num_classes, in_features))
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    @property
    def centres(self):
        return self.weight

    def forward(self, x):
        if self.distance == "euclidean_softmax":
            return -self.n * harmonic.pairwise("euclidean", x, self.weight)
        score = x @ self.weight.T
        # log softplus(s) = s for s << 0; the clamp keeps the unused branch's gradient finite (no 0 * inf)
        log_score = torch.where(score > -20, torch.log(nn.functional.softplus(score.clamp(min=-20))), score)
        return self.n * log_score


def make_head(spec, in_features, num_classes, tied_weight=None):
    """A library head or an ablation head from a resolved spec."""
    spec = resolve_toy_head(spec)
    if spec["distance"] in ABLATION_HEADS:
        return AblationHead(spec["distance"], in_features, num_classes, n=spec["n"], tied_weight=tied_weight)
    return harmonic.head_from_spec(spec, in_features, num_classes, tied_weight=tied_weight)


class ToyMLP(nn.Module):
    """Token embeddings (16-d) concatenated -> Linear(->100) -> SiLU -> Linear(->16) -> head tied to the embedding.

    Tying the head's centres (or CE weights) to the token embedding is what makes the embedding geometry readable:
    the answer tokens are the class prototypes.
    """

    embedding_is_head_weight = True  # as in the original, whose penalty then reads a tensor without gradient

    def __init__(self, vocab_size, seq_len, head_spec, embed_dim=16, hidden=100, embedding_init="normal"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        if embedding_init == "linear_uniform":
            bound = 1 / math.sqrt(embed_dim)  # nn.Linear(embed_dim, vocab)'s kaiming_uniform(a=sqrt(5)) bound
            nn.init.uniform_(self.embedding.weight, -bound, bound)
        elif embedding_init != "normal":
            raise ValueError(f"embedding_init must be one of {EMBEDDING_INITS} (got {embedding_init!r})")
        self.body = nn.Sequential(nn.Linear(seq_len * embed_dim, hidden), nn.SiLU(), nn.Linear(hidden, embed_dim))
        self.head = make_head(head_spec, embed_dim, vocab_size, tied_weight=self.embedding.weight)

    def forward(self, tokens):
        features = self.body(self.embedding(tokens).flatten(1))
        return self.head(features)


class ToyTransformer(nn.Module):
    """Two pre-norm encoder layers (d 16, 2 heads, FFN 64), learned positions, prediction from the last position.

    The head is untied.
    """

    embedding_is_head_weight = False

    def __init__(self, vocab_size, seq_len, head_spec, embed_dim=16, n_layers=2, n_heads=2, ffn=64):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.position = nn.Parameter(torch.zeros(seq_len, embed_dim))
        layer = nn.TransformerEncoderLayer(
            embed_dim, n_heads, ffn, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = make_head(head_spec, embed_dim, vocab_size)

    def forward(self, tokens):
        hidden = self.encoder(self.embedding(tokens) + self.position)
        return self.head(self.norm(hidden[:, -1]))


class OriginalToyTransformer(nn.Module):
    """The original's toy transformer (grow-crystals src/utils/model.py:421-461), layer by layer.

    Post-LN encoder layers with ReLU and dropout 0.1 (PyTorch's defaults), each wrapped in one more residual
    (x = layer(x) + x); positions N(0, 1); embedding N(0, 1/D). CE: logits = last hidden . embedding^T (tied, no bias).
    Harmonic: an untied head on the last hidden state, no final norm.
    """

    embedding_is_head_weight = False  # an nn.Embedding module in the original: its penalty has a gradient

    def __init__(self, vocab_size, seq_len, head_spec, embed_dim=16, n_layers=2, n_heads=2, ffn=64):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        nn.init.normal_(self.embedding.weight, std=1 / math.sqrt(embed_dim))
        self.position = nn.Parameter(torch.randn(seq_len, embed_dim))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(embed_dim, n_heads, ffn, batch_first=True) for _ in range(n_layers)
        )
        spec = resolve_toy_head(head_spec)
        tied = spec["distance"] == BASELINE
        if tied:
            spec = dict(spec, bias=False)
        self.head = make_head(spec, embed_dim, vocab_size, tied_weight=self.embedding.weight if tied else None)

    def forward(self, tokens):
        x = self.embedding(tokens) + self.position
        for layer in self.layers:
            x = layer(x) + x
        return self.head(x[:, -1])


def build_model(name, vocab_size, seq_len, head_spec, embed_dim=16, embedding_init="normal", transformer="prenorm"):
    """Build a toy model by name ("mlp" or "transformer") with the options of the module docstring."""
    if name == "mlp":
        return ToyMLP(vocab_size, seq_len, head_spec, embed_dim=embed_dim, embedding_init=embedding_init)
    if name == "transformer":
        if transformer == "original":
            return OriginalToyTransformer(vocab_size, seq_len, head_spec, embed_dim=embed_dim)
        if transformer != "prenorm":
            raise ValueError(f"transformer must be one of {TRANSFORMER_STYLES} (got {transformer!r})")
        return ToyTransformer(vocab_size, seq_len, head_spec, embed_dim=embed_dim)
    raise ValueError(f"unknown toy model {name!r}; allowed: {', '.join(MODELS)}")


def build_from_hp(hp, vocab_size, seq_len):
    """The model a cell's resolved hyperparameters describe (the head with its effective exponent)."""
    return build_model(
        hp["model"],
        vocab_size,
        seq_len,
        effective_head(hp["head"], hp["distance_power"]),
        embed_dim=hp["embed_dim"],
        embedding_init=hp["embedding_init"],
        transformer=hp["transformer"],
    )


def penalised_embedding(model, hp):
    """The tensor the embedding penalty is computed on. With mlp_penalty_gradient false it is detached for the MLP,
    whose embedding is the head's weight, as in the original: there `self.embedding` is the last layer's weight
    Parameter, so the penalty takes `self.embedding.data` (model.py:221-224) and no gradient reaches the embedding.
    The transformers' penalty always has a gradient (an nn.Embedding there, too)."""
    weight = model.embedding.weight
    if model.embedding_is_head_weight and not hp["mlp_penalty_gradient"]:
        return weight.detach()
    return weight
