"""Training loop for one toy cell: AdamW, mini-batches, the embedding penalty, per-epoch curves, divergence.

Readable top to bottom: build the data and the model, train epoch by epoch, evaluate the full train and test sets
after every epoch (the grokking epochs need per-epoch accuracy), stop early only if the loss stops being finite.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from harmonic.regularizers import embedding_penalty
from harmonic.toy.datasets import make_dataset, overlap_fraction
from harmonic.toy.models import build_from_hp, penalised_embedding


@dataclass
class ToyResult:
    """What one training run produced: per-epoch curves, the final token embedding, and divergence if any."""

    curves: list = field(default_factory=list)  # one dict per epoch
    embedding: np.ndarray | None = None
    diverged_at: dict | None = None
    overlap_fraction: float = 0.0
    n_train: int = 0
    n_test: int = 0
    n_parameters: int = 0


@torch.no_grad()
def evaluate(model, x, y):
    """Mean loss and accuracy over a whole (small) split; NaN for an empty split."""
    if len(y) == 0:
        return math.nan, math.nan
    logits = model(x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(-1) == y).float().mean().item()


def train_toy(hp, device="cpu", log=print):
    """Train one cell described by the resolved hyperparameters ``hp`` (see config.yaml, section toy)."""
    data = make_dataset(
        hp["task"],
        seed=hp["seed"],
        split=hp["split"],
        n_samples=hp["n_samples"],
        train_fraction=hp["train_fraction"],
    )
    result = ToyResult(overlap_fraction=overlap_fraction(data), n_train=len(data.y_train), n_test=len(data.y_test))
    x_train, y_train, x_test, y_test = (
        torch.as_tensor(a, dtype=torch.long, device=device)
        for a in (data.x_train, data.y_train, data.x_test, data.y_test)
    )

    torch.manual_seed(hp["seed"])
    model = build_from_hp(hp, data.vocab_size, x_train.shape[1]).to(device)
    result.n_parameters = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
    shuffler = torch.Generator().manual_seed(hp["seed"])
    batch_size = hp["batch_size"]

    for epoch in range(1, hp["epochs"] + 1):
        model.train()
        order = torch.randperm(len(y_train), generator=shuffler).to(device)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            loss = loss + hp["embedding_penalty"] * embedding_penalty(penalised_embedding(model, hp))
            if not torch.isfinite(loss):
                result.diverged_at = {"epoch": epoch}
                log(f"loss is {loss.item()} at epoch {epoch}: diverged")
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if result.diverged_at:
            break

        model.eval()
        train_loss, train_acc = evaluate(model, x_train, y_train)
        test_loss, test_acc = evaluate(model, x_test, y_test)
        result.curves.append(
            dict(
                epoch=epoch,
                train_loss=train_loss,
                train_acc=train_acc,
                test_loss=test_loss,
                test_acc=test_acc,
            )
        )
        if epoch == 1 or epoch % max(1, hp["epochs"] // 10) == 0:
            log(
                f"epoch {epoch}: train loss {train_loss:.4f} acc {train_acc:.3f}"
                f" | test loss {test_loss:.4f} acc {test_acc:.3f}"
            )

    result.embedding = model.embedding.weight.detach().cpu().numpy()
    return result
