import numpy as np
import pytest

from data import trees
from patchpu_keras.data import load_index, observe, partial


def _full(rng, n=400, num_labels=20):
    full = (rng.random((n, num_labels)) < 0.15).astype("float32")
    full[full.sum(1) == 0, rng.integers(0, num_labels)] = 1
    return full


def test_single_positive_on_voc_is_one_true_positive_per_image_reproducibly(tmp_path):
    trees.make_voc(tmp_path)
    full = load_index(str(tmp_path)).train.full_labels
    observed = observe(full, "single_positive")  # seed 1200 by default
    assert np.all((observed == 1).sum(axis=1) == 1) and np.all(observed >= 0)
    assert np.all(full[observed == 1] == 1)
    np.testing.assert_array_equal(observed, observe(full, "single_positive", seed=1200))


def test_single_positive_draws_differ_between_seeds_and_cover_every_positive(rng):
    full = _full(rng)
    draws = [observe(full, "single_positive", seed=seed) for seed in range(40)]
    assert not np.array_equal(draws[0], draws[1])
    # Over many seeds, every positive of every image gets drawn: the draw is among all of them.
    np.testing.assert_array_equal(np.max(draws, axis=0), full)


@pytest.mark.parametrize("fraction, kept", [(0.1, 2), (0.25, 5), (0.5, 10), (1.0, 20), (0.01, 1)])
def test_partial_keeps_the_fraction_of_labels_positives_and_negatives(rng, fraction, kept):
    full = _full(rng)
    observed = observe(full, "partial", seed=7, partial_fraction=fraction)
    assert np.all((observed != 0).sum(axis=1) == kept)
    # Kept labels are the true ones: +1 on positives, -1 on negatives.
    np.testing.assert_array_equal(observed[observed != 0], (2 * full - 1)[observed != 0])
    np.testing.assert_array_equal(observed, partial(full, fraction, seed=7))
    if fraction < 1:
        assert not np.array_equal(observed, partial(full, fraction, seed=8))
        # Uniform over labels: each column is kept about `fraction` of the time.
        np.testing.assert_allclose((observed != 0).mean(axis=0), kept / 20, atol=0.06)
        assert (observed == -1).any() and (observed == 1).any()


def test_observe_rejects_what_it_cannot_do(rng):
    full = _full(rng, n=5)
    with pytest.raises(ValueError, match="Received: partial_fraction=0"):
        observe(full, "partial", partial_fraction=0)
    with pytest.raises(ValueError, match="Received: regime='half'"):
        observe(full, "half")
    np.testing.assert_array_equal(observe(full, "observed"), 2 * full - 1)


def test_regimes_on_observed_only_data(rng):
    observed = np.array([[1, 1, 0, -1], [0, 1, 0, 0], [1, 0, 1, 1]], "float32")
    np.testing.assert_array_equal(observe(None, "observed", observed_labels=observed), observed)
    drawn = observe(None, "single_positive", seed=3, observed_labels=observed)
    assert np.all((drawn == 1).sum(1) == 1) and np.all(observed[drawn == 1] == 1) and drawn.min() == 0
    for regime in ("full", "partial"):
        with pytest.raises(ValueError, match="only has observed labels"):
            observe(None, regime, partial_fraction=0.5, observed_labels=observed)
