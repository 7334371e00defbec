import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from patchpu_keras.metrics.weak_negative_separation import roc_auc, weak_negative_separation


def test_roc_auc_matches_scikit_learn_with_ties(rng):
    higher = np.round(rng.random(40) + 0.2, 1)  # rounded: many ties
    lower = np.round(rng.random(60), 1)
    expected = roc_auc_score(np.r_[np.ones(40), np.zeros(60)], np.r_[higher, lower])
    assert roc_auc(higher, lower) == pytest.approx(expected, abs=1e-12)
    assert roc_auc([1.0, 2.0], [0.0]) == 1.0 and roc_auc([0.5], [0.5]) == 0.5
    assert np.isnan(roc_auc([], [1.0]))


def test_separation_on_a_hand_made_batch():
    observed = np.array([[1, 0, 0, 0], [0, 1, 0, -1]])
    full = np.array([[1, 1, 0, 0], [1, 1, 0, 0]])
    # Unknown entries: (0,1) hidden positive, (0,2) (0,3) true negatives, (1,0) hidden, (1,2) true negative.
    weights = np.array([[0.0, 0.2, 0.9, 0.5], [0.6, 0.0, 0.4, 1.0]])
    probabilities = np.array([[0.9, 0.7, 0.1, 0.3], [0.2, 0.8, 0.25, 0.0]])
    result = weak_negative_separation(observed, full, weights, probabilities)
    assert result["wn_weight_hidden_positive"] == pytest.approx((0.2 + 0.6) / 2)
    assert result["wn_weight_true_negative"] == pytest.approx((0.9 + 0.5 + 0.4) / 3)
    # True negatives 0.9, 0.5, 0.4 against hidden 0.2, 0.6: 4 of 6 pairs higher.
    assert result["wn_weight_auc"] == pytest.approx(4 / 6)
    # Hidden 0.7, 0.2 against true negatives 0.1, 0.3, 0.25: 3 + 1 of 6 pairs.
    assert result["probability_auc"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="same shape"):
        weak_negative_separation(observed, full[:, :3], weights, probabilities)
