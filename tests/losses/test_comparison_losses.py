"""The losses the papers compare with, each against a hand-written numpy version."""

import numpy as np
import pytest

from patchpu_keras import losses
from tests.conftest import to_numpy

EPS = 1e-7


def _log(x):
    return np.log(np.clip(x, EPS, 1.0))


def _bce(t, p):
    return -(t * _log(p) + (1 - t) * _log(1 - p))


@pytest.fixture
def problem(rng):
    observed = rng.choice([-1, 0, 0, 0, 1], size=(8, 5)).astype("float32")
    observed[0] = [1, 0, 0, 0, 0]
    probabilities = rng.uniform(0, 1, (8, 5)).astype("float32")
    probabilities[1, :2] = [0.0, 1.0]
    return observed, probabilities


def test_assume_negative_ls(problem):
    y, p = problem
    targets = np.where(y == 1, 0.9, 0.1)
    expected = _bce(targets, p).mean()
    np.testing.assert_allclose(to_numpy(losses.assume_negative_ls(y, p, 0.1)), expected, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(losses.AssumeNegativeLS(0.1)(y, p)), expected, rtol=1e-5)


def test_weak_assume_negative(problem):
    y, p = problem
    weights = np.where(y == -1, 1.0, 1.0 / 4)
    expected = np.where(y == 1, -_log(p), -weights * _log(1 - p)).mean()
    np.testing.assert_allclose(to_numpy(losses.weak_assume_negative(y, p)), expected, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(losses.WeakAssumeNegative()(y, p)), expected, rtol=1e-5)


def test_expected_positive_regularization(problem):
    y, p = problem
    expected = np.where(y == 1, -_log(p), 0).mean() + (p.sum(1).mean() - 1.38) ** 2 / 25
    np.testing.assert_allclose(to_numpy(losses.expected_positive_regularization(y, p, 1.38)), expected, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(losses.ExpectedPositiveRegularization(1.38)(y, p)), expected, rtol=1e-5)


def test_role(problem, rng):
    y, p = problem
    e = rng.uniform(0.01, 0.99, p.shape).astype("float32")
    pos = y == 1

    def reg(q):
        return (q.sum(1).mean() - 2.0) ** 2 / 25

    model_terms = np.where(pos, -_log(p), 0) + _bce(e, p)
    estimate_terms = np.where(pos, -_log(e), 0) + _bce(p, e)
    expected = (0.5 * (model_terms + estimate_terms)).mean() + 0.5 * (reg(p) + reg(e))
    np.testing.assert_allclose(to_numpy(losses.role(y, p, e, 2.0)), expected, rtol=1e-5)


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.2])
def test_large_loss_selection_and_modes(problem, rate):
    y, p = problem
    unknown_losses = np.where(y == 0, -_log(1 - p), -np.inf)
    k = int(np.ceil(rate * y.size))
    selected = np.zeros(y.shape, bool)
    if k:
        threshold = np.sort(unknown_losses.ravel())[::-1][k - 1]
        selected = (y == 0) & (unknown_losses >= threshold)
        assert selected.sum() == k  # random scores: no ties
    got = to_numpy(losses.large_loss_selection(y, p, rate))
    np.testing.assert_array_equal(got, selected)
    an_terms = np.where(y == 1, -_log(p), -_log(1 - p))
    expected = {
        "reject": np.where(selected, 0.0, an_terms).mean(),
        "temporary": np.where(selected, -_log(p), an_terms).mean(),
        "permanent": np.where(selected, -_log(p), an_terms).mean(),
    }
    for mode, value in expected.items():
        np.testing.assert_allclose(to_numpy(losses.large_loss(y, p, rate, mode)), value, rtol=1e-5)


def test_large_loss_rate_schedule():
    # LL-R and LL-Ct grow by delta_rel every epoch; LL-Cp selects a constant
    # delta_rel of every batch after the first epoch (Kim et al.'s losses.py).
    schedules = {
        "reject": (0.005, [0, 0.005, 0.010, 0.015]),
        "temporary": (0.002, [0, 0.002, 0.004, 0.006]),
        "permanent": (0.001, [0, 0.001, 0.001, 0.001]),
    }
    for mode, (delta, expected) in schedules.items():
        loss = losses.LargeLoss(mode)
        assert loss.delta_rel == delta
        rates = [float(to_numpy(loss.rejection_rate(epoch))) for epoch in range(4)]
        np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_ll_cp_corrects_a_constant_k_per_batch():
    # B = 16, L = 20, delta_rel = 0.001: k = ceil(0.32) = 1 entry per batch in
    # epochs 1, 2, ... (a rate growing with the epoch would select 1, then 1, then 1,
    # ... and 7 at epoch 20, where the published method still selects 1).
    loss = losses.LargeLoss("permanent")
    rng = np.random.default_rng(0)
    y = np.zeros((16, 20), "float32")
    y[np.arange(16), rng.integers(0, 20, 16)] = 1
    p = rng.uniform(0.01, 0.99, y.shape).astype("float32")
    for epoch, expected in ((0, 0), (1, 1), (20, 1)):
        rate = loss.rejection_rate(epoch)
        assert int(to_numpy(losses.large_loss_selection(y, p, rate)).sum()) == expected
    # LL-R at epoch 20: ceil(0.005 * 20 * 320) = 32 entries.
    rate = losses.LargeLoss("reject").rejection_rate(20)
    assert int(to_numpy(losses.large_loss_selection(y, p, rate)).sum()) == 32


def test_expected_negative_consistency(problem, rng):
    y, p = problem
    averages = rng.uniform(0, 1, p.shape).astype("float32")
    expected_negative = (y == -1) | ((y == 0) & (averages < 0.4))
    terms = np.where(y == 1, -_log(p), 0) + np.where(expected_negative, -_log(1 - p), 0)
    terms += np.where(y == 0, 2.0 * (p - averages) ** 2, 0)
    np.testing.assert_allclose(
        to_numpy(losses.expected_negative_consistency(y, p, averages, threshold=0.4, weight=2.0)), terms.mean(), rtol=1e-5
    )


def test_entropy_maximization_and_pseudo_negatives(problem, rng):
    y, p = problem
    entropy = -(p * _log(p) + (1 - p) * _log(1 - p))
    terms = np.where(y == 1, -_log(p), np.where(y == -1, -_log(1 - p), -0.2 * entropy))
    np.testing.assert_allclose(to_numpy(losses.entropy_maximization(y, p, 0.2)), terms.mean(), rtol=1e-5)
    targets = np.where(rng.uniform(size=p.shape) < 0.5, rng.uniform(0, 0.2, p.shape), -1).astype("float32")
    pseudo = (y == 0) & (targets >= 0)
    terms = np.where(pseudo, 0.02 * _bce(np.maximum(targets, 0), p), terms)
    np.testing.assert_allclose(to_numpy(losses.entropy_maximization(y, p, 0.2, targets, 0.02)), terms.mean(), rtol=1e-5)


def test_asymmetric_pseudo_labelling_picks_the_lowest_unknowns(rng):
    observed = np.zeros((20, 2), "float32")
    observed[:5, 0] = 1
    loss = losses.EntropyMaximization(alpha=0.2, beta=0.02, warmup_epochs=2, num_epochs=4, negative_proportion=0.5)
    state = loss.make_state(observed)
    scores = rng.uniform(0, 1, (20, 2)).astype("float32")
    state.table("last_probabilities").assign(scores)
    loss.on_epoch_end(state, 0)  # before the warm-up ends: nothing
    assert np.all(to_numpy(state.table("pseudo_negative_targets")) < 0)
    loss.on_epoch_end(state, 1)
    targets = to_numpy(state.table("pseudo_negative_targets"))
    # Class 0: 15 unknowns, quota int(0.5 * 15 / 2) = 3; class 1: int(0.5 * 20 / 2) = 5.
    for label, quota, rows in ((0, 3, np.arange(5, 20)), (1, 5, np.arange(20))):
        chosen = rows[np.argsort(scores[rows, label])[:quota]]
        np.testing.assert_array_equal(np.flatnonzero(targets[:, label] >= 0), np.sort(chosen))
        np.testing.assert_allclose(targets[chosen, label], scores[chosen, label])
    loss.on_epoch_end(state, 2)  # the next round picks new entries only
    assert (to_numpy(state.table("pseudo_negative_targets"))[:, 1] >= 0).sum() == 10
