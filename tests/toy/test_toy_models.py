"""The toy models end in the library head, tie the MLP's centres to the embedding, and learn (one step lowers the loss)."""

import pytest
import torch
import torch.nn.functional as F

from harmonic.toy.config import resolve
from harmonic.toy.datasets import make_dataset
from harmonic.toy.models import build_model
from harmonic.toy.train import train_toy

HEADS = [{"distance": "baseline"}, {"distance": "euclidean", "n": 1.0}]


@pytest.mark.parametrize("transformer", ["prenorm", "original"])
@pytest.mark.parametrize("model_name", ["mlp", "transformer"])
@pytest.mark.parametrize("head", HEADS, ids=["baseline", "euclidean"])
def test_one_step_lowers_the_loss(model_name, head, transformer):
    torch.manual_seed(0)
    data = make_dataset("modular_addition", seed=0)
    x, y = torch.as_tensor(data.x_train[:64]), torch.as_tensor(data.y_train[:64])
    model = build_model(model_name, data.vocab_size, x.shape[1], head, transformer=transformer).eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    logits = model(x)
    assert logits.shape == (64, data.vocab_size)
    before = F.cross_entropy(logits, y)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        assert F.cross_entropy(model(x), y) < before


def test_mlp_head_centres_are_the_token_embedding():
    model = build_model("mlp", 31, 2, HEADS[1])
    assert model.head.centres is model.embedding.weight


def test_training_loop_records_curves_and_detects_divergence():
    hp = resolve(dict(task="equivalence", head=HEADS[1], n_samples=200, embed_dim=8, epochs=4))
    result = train_toy(hp, log=lambda line: None)
    assert [row["epoch"] for row in result.curves] == [1, 2, 3, 4] and result.diverged_at is None
    assert result.embedding.shape == (42, 8)
    diverging = train_toy(dict(hp, lr=float("inf")), log=lambda line: None)
    assert diverging.diverged_at == {"epoch": 2} or diverging.diverged_at == {"epoch": 1}
