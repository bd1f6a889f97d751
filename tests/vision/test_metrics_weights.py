"""PCA numbers of a cell against sklearn on a known case, and the weight-study interpretability score on a
constructed case."""

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from harmonic.metrics import pca_summary
from harmonic.vision.weights import interpretability_scores


def test_pca_summary_matches_sklearn_on_standardised_features():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(500, 3)) * np.array([5.0, 2.0, 1.0])
    features = latent @ rng.normal(size=(3, 12)) + 0.1 * rng.normal(size=(500, 12))
    ratio = PCA().fit(StandardScaler().fit_transform(features)).explained_variance_ratio_
    got = pca_summary(features, standardize=True, k=10)
    assert got["ev_pc1"] == pytest.approx(ratio[0], rel=1e-6)
    assert got["ev_pc1_pc2"] == pytest.approx(ratio[:2].sum(), rel=1e-6)
    assert got["n_pcs_90"] == int(np.searchsorted(np.cumsum(ratio), 0.9) + 1)
    assert got["n_pcs_95"] == int(np.searchsorted(np.cumsum(ratio), 0.95) + 1)
    assert got["participation_ratio"] == pytest.approx(1.0 / np.sum(ratio**2), rel=1e-6)


def test_interpretability_score_on_a_constructed_case():
    # 2 classes x 4 pixels; pixels 0 and 1 are zero in every training image
    always_zero = np.array([True, True, False, False])
    weight = np.array([[0.0005, 0.05, 1.0, 2.0], [0.002, 0.5, 3.0, 1.0]])
    scores = interpretability_scores(weight, always_zero, taus=[0.001, 0.01, 0.1])
    assert scores["always_zero_pixels"] == 2
    assert scores["interp_abs_tau0.001"] == pytest.approx(1 / 4)  # only 0.0005 of the 4 dead weights
    assert scores["interp_abs_tau0.01"] == pytest.approx(2 / 4)
    assert scores["interp_abs_tau0.1"] == pytest.approx(3 / 4)
    # relative to the median |w| on live pixels (1.5): 0.0005/1.5, 0.002/1.5 < 0.01; 0.05/1.5 < 0.1 too
    assert scores["interp_rel_tau0.01"] == pytest.approx(2 / 4)
    assert scores["interp_rel_tau0.1"] == pytest.approx(3 / 4)


def test_interpretability_score_needs_dead_pixels():
    with pytest.raises(ValueError, match="no pixel is zero"):
        interpretability_scores(np.ones((2, 3)), np.zeros(3, bool), taus=[0.1])
