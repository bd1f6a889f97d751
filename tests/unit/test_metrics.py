"""harmonic.metrics against independent references (sklearn) and hand-made cases."""

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import f1_score, precision_score, recall_score
from sklearn.preprocessing import StandardScaler

from harmonic import metrics


@pytest.mark.parametrize("standardize", [False, True])
def test_pca_summary_matches_sklearn(standardize):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) + rng.normal(size=12) * 5
    Z = StandardScaler().fit_transform(X) if standardize else X
    expected = PCA().fit(Z).explained_variance_ratio_
    got = metrics.pca_summary(X, standardize=standardize, k=10)
    np.testing.assert_allclose(got["ev"], expected[:10], rtol=1e-6, atol=1e-9)
    assert got["ev_pc1"] == pytest.approx(expected[0])
    assert got["ev_pc1_pc2"] == pytest.approx(expected[:2].sum())
    assert got["ev_cum_10"] == pytest.approx(expected[:10].sum())
    cumulative = np.cumsum(expected)
    assert got["n_pcs_90"] == int(np.argmax(cumulative >= 0.90) + 1)
    assert got["n_pcs_95"] == int(np.argmax(cumulative >= 0.95) + 1)


def test_spectrum_measures_on_known_cases():
    # Points spread equally along 4 orthogonal axes: 4 equal variances -> effective rank 4, participation 4.
    X = np.concatenate([np.eye(4) * s for s in (1.0, -1.0)])
    got = metrics.pca_summary(X, standardize=False)
    assert got["effective_rank"] == pytest.approx(4.0)
    assert got["participation_ratio"] == pytest.approx(4.0)
    assert got["n_pcs_90"] == 4
    # One direction only: rank 1.
    line = np.outer(np.arange(10.0), [1.0, 2.0, 3.0])
    assert metrics.pca_summary(line, standardize=False)["effective_rank"] == pytest.approx(1.0)
    assert metrics.effective_rank(np.diag([1.0, 1.0, 0.0])) == pytest.approx(2.0)


def test_pca_rejects_too_few_rows():
    with pytest.raises(ValueError, match="at least 2 rows"):
        metrics.pca_summary(np.ones((1, 3)))


def test_grokking_epoch():
    acc = [0.1] * 5 + [0.95] * 3 + [0.5] + [0.92] * 20 + [0.1]
    assert metrics.grokking_epoch(acc, threshold=0.9, window=20) == 9
    assert metrics.grokking_epoch(acc, threshold=0.9, window=21) is None
    assert metrics.grokking_epoch([0.9] * 30) is None  # strictly greater than the threshold


def test_classification_scores_match_sklearn():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 6, size=500)
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.integers(0, 5, size=500))  # class 5 under-predicted
    got = metrics.classification_scores(y_true, y_pred, num_classes=7)  # class 6 absent everywhere
    assert got["accuracy"] == pytest.approx((y_true == y_pred).mean())
    for key, fn in [("precision_macro", precision_score), ("recall_macro", recall_score), ("f1_macro", f1_score)]:
        assert got[key] == pytest.approx(fn(y_true, y_pred, average="macro", zero_division=0))
