"""The two toy models of Baek et al., each ending in a library head (CE baseline or a harmonic distance head).

Both return logits: for a harmonic head these are -n * log(d + eps), so plain cross-entropy on them is the
harmonic loss.
"""

import torch
from torch import nn

import harmonic

MODELS = ("mlp", "transformer")


class ToyMLP(nn.Module):
    """Token embeddings (16-d) concatenated -> Linear(->100) -> SiLU -> Linear(->16) -> head tied to the embedding.

    Tying the head's centres (or CE weights) to the token embedding is what makes the embedding geometry readable:
    the answer tokens are the class prototypes.
    """

    def __init__(self, vocab_size, seq_len, head_spec, embed_dim=16, hidden=100):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.body = nn.Sequential(nn.Linear(seq_len * embed_dim, hidden), nn.SiLU(), nn.Linear(hidden, embed_dim))
        self.head = harmonic.head_from_spec(head_spec, embed_dim, vocab_size, tied_weight=self.embedding.weight)

    def forward(self, tokens):
        features = self.body(self.embedding(tokens).flatten(1))
        return self.head(features)


class ToyTransformer(nn.Module):
    """Two pre-norm encoder layers (d 16, 2 heads, FFN 64), learned positions, prediction from the last position.

    The head is untied, as in the original.
    """

    def __init__(self, vocab_size, seq_len, head_spec, embed_dim=16, n_layers=2, n_heads=2, ffn=64):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.position = nn.Parameter(torch.zeros(seq_len, embed_dim))
        layer = nn.TransformerEncoderLayer(
            embed_dim, n_heads, ffn, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = harmonic.head_from_spec(head_spec, embed_dim, vocab_size)

    def forward(self, tokens):
        hidden = self.encoder(self.embedding(tokens) + self.position)
        return self.head(self.norm(hidden[:, -1]))


def build_model(name, vocab_size, seq_len, head_spec, embed_dim=16):
    """Build a toy model by name ("mlp" or "transformer")."""
    if name == "mlp":
        return ToyMLP(vocab_size, seq_len, head_spec, embed_dim=embed_dim)
    if name == "transformer":
        return ToyTransformer(vocab_size, seq_len, head_spec, embed_dim=embed_dim)
    raise ValueError(f"unknown toy model {name!r}; allowed: {', '.join(MODELS)}")
