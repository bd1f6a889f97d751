"""The optional regularizers: Baek et al.'s embedding penalty and the distance-family batch regularizer."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from harmonic.regularizers import distance_regularizer, embedding_penalty, regularized_loss


def test_embedding_penalty_is_mean_over_dims_of_rms_over_tokens():
    gen = np.random.default_rng(0)
    embedding = gen.normal(size=(11, 4)) * np.array([1.0, 2.0, 0.0, 5.0])
    expected = np.mean([np.sqrt(np.mean(embedding[:, j] ** 2)) for j in range(4)])
    got = embedding_penalty(torch.tensor(embedding))
    assert got.item() == pytest.approx(expected, rel=1e-12)
    # Not a squared L2: doubling E doubles the penalty.
    assert embedding_penalty(torch.tensor(2 * embedding)).item() == pytest.approx(2 * expected, rel=1e-12)
    with pytest.raises(ValueError, match="2-D"):
        embedding_penalty(torch.ones(3))


@pytest.mark.parametrize(
    "distance, metric", [("euclidean", "euclidean"), ("manhattan", "cityblock"), ("cosine", "cosine")]
)
def test_distance_regularizer_is_mean_pairwise_distance(distance, metric):
    features = np.random.default_rng(1).normal(size=(6, 3))
    got = distance_regularizer(torch.tensor(features), distance)
    assert got.item() == pytest.approx(pdist(features, metric).mean(), rel=1e-9)


def test_distance_regularizer_single_row_and_params():
    assert distance_regularizer(torch.ones(1, 3)).item() == 0.0
    with pytest.raises(ValueError, match="'p'"):
        distance_regularizer(torch.ones(2, 3), "minkowski", p=-1)


def test_regularized_loss_off_by_default_and_adds_gradient():
    features = torch.randn(5, 3, requires_grad=True)
    loss = features.sum() * 0.0
    assert regularized_loss(loss, features) is loss
    total = regularized_loss(loss, features, lam=0.5, distance="euclidean")
    torch.testing.assert_close(total, 0.5 * distance_regularizer(features))
    total.backward()
    assert features.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="'lam'"):
        regularized_loss(loss, features, lam=-1.0)
