"""`rematerialize_embedder`: the same training step, with the embedder's activations recomputed."""

import keras
import numpy as np
import pytest

from patchpu_keras import losses
from patchpu_keras.training.builders import build_model, method_defaults, resolve_jit_compile
from tests.conftest import to_numpy
from tests.configs import TINY


def _one_step(model, images, observed):
    model.compile(
        optimizer=keras.optimizers.SGD(0.5), loss=losses.WeakNegative(),
        jit_compile=resolve_jit_compile("auto"),
    )
    model.train_on_batch(images, observed)
    return {variable.path: to_numpy(variable) for variable in model.weights}


def test_a_rematerialized_step_trains_exactly_like_the_plain_one(tiny_model, rng, monkeypatch):
    # Drop-connect draws random masks outside the rematerialised function; without it the two
    # steps see the same numbers.
    plain = tiny_model(drop_connect_rate=0.0)
    remat = tiny_model(drop_connect_rate=0.0, rematerialize_embedder=True)
    remat.set_weights(plain.get_weights())
    initial = {variable.path: to_numpy(variable).copy() for variable in plain.weights}
    images = rng.uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    observed = np.eye(4, dtype="float32")[[0, 2, 1, 3]]

    calls = []
    original = keras.remat

    def counting_remat(function):
        calls.append(function)
        return original(function)

    monkeypatch.setattr(keras, "remat", counting_remat)
    expected = _one_step(plain, images, observed)
    assert not calls
    got = _one_step(remat, images, observed)
    # The stem and the five blocks are rematerialised (once per trace of the step).
    assert len(calls) >= 6

    changes = {path: np.max(np.abs(expected[path] - initial[path])) for path in expected}
    moving = [path for path in expected if "moving_variance" in path]
    assert len(moving) == 15  # the stem, block1a (2), the four expanded blocks (3 each)
    for path in expected:
        np.testing.assert_allclose(got[path], expected[path], rtol=1e-5, atol=1e-6, err_msg=path)
    # The comparison can fail: the step moved every weight far more than the tolerance, and each
    # moving variance moved once (a second update from the recomputed forward pass would move
    # it by about as much again).
    assert min(changes[path] for path in moving) > 1e-3
    assert max(changes.values()) > 1e-2


def test_a_rematerialized_embedder_refuses_batch_norms_it_cannot_update_once(tiny_model, rng):
    model = tiny_model(drop_connect_rate=0.0, rematerialize_embedder=True)
    model.backbone.embedder.blocks[1].expand_bn.renorm = True
    images = rng.uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    with pytest.raises(ValueError, match="expand_bn with synchronized=False, renorm=True"):
        model(images, training=True)
    # Inference does not rematerialise anything, so it is unaffected.
    assert to_numpy(model(images, training=False)["probabilities"]).shape == (2, 4)


def test_the_recipe_key_reaches_the_model_and_its_config():
    config = {**method_defaults(), **TINY, "stride": None, "downsample_factor": 2, "seed": 0}
    assert config["rematerialize_embedder"] is False
    model = build_model({**config, "rematerialize_embedder": True}, num_labels=3)
    assert model.backbone.embedder.rematerialize and all(block.rematerialize for block in model.backbone.embedder.blocks)
    assert model.backbone.get_config()["rematerialize_embedder"] is True
    assert type(model).from_config(model.get_config()).backbone.embedder.rematerialize
    assert not build_model(config, num_labels=3).backbone.embedder.rematerialize
