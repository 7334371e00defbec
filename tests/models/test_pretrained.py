"""Pretrained backbones and embedders, offline: weights files made here from keras.applications."""

import keras
import numpy as np
import pytest
from keras.src.utils import file_utils

from patchpu_keras import CAMClassifier, PatchPUClassifier
from patchpu_keras.models import pretrained
from tests.conftest import TINY, to_numpy

SIZE = 32  # the smallest input keras.applications accepts; weights do not depend on it


def _randomize(model, seed):
    # Every weight, batch-norm statistics included, away from any fresh initialisation.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        new = [rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in weights]
        if isinstance(layer, keras.layers.BatchNormalization):
            new[-1] = np.abs(new[-1]) + 0.5  # moving variance
        if isinstance(layer, keras.layers.Normalization):
            continue  # set explicitly below
        layer.set_weights(new)


@pytest.fixture(scope="module")
def resnet_files(tmp_path_factory):
    """A ResNet-50 saved with its top, as `ResNet50(weights="imagenet").save_weights(...)` would be."""
    folder = tmp_path_factory.mktemp("resnet")
    resnet = keras.applications.ResNet50(weights=None, include_top=True, input_shape=(SIZE, SIZE, 3))
    _randomize(resnet, 1)
    path = str(folder / "resnet50_imagenet.weights.h5")
    resnet.save_weights(path)
    legacy = str(folder / "resnet50_notop.h5")
    _save_legacy_h5(keras.Model(resnet.input, resnet.get_layer("conv5_block3_out").output), legacy)
    features = keras.Model(resnet.input, resnet.get_layer("conv5_block3_out").output)
    return {"weights": path, "legacy": legacy, "model": resnet, "features": features}


def _save_legacy_h5(model, path):
    # The format of the files keras.applications downloads into ~/.keras/models.
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, model)


@pytest.fixture(scope="module")
def efficientnet_files(tmp_path_factory):
    """EfficientNet-B0 files: from scratch (no normalisation) and with Keras' ImageNet statistics."""
    folder = tmp_path_factory.mktemp("efficientnet")
    model = keras.applications.EfficientNetB0(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    _randomize(model, 2)
    paths = {"scratch": str(folder / "b0_scratch.weights.h5")}
    model.save_weights(paths["scratch"])
    # Keras' ImageNet file stores the ImageNet std as the Normalization variance.
    normalization = next(l for l in model.layers if isinstance(l, keras.layers.Normalization))
    _, _, count = normalization.get_weights()
    normalization.set_weights(
        [np.array(pretrained.IMAGENET_MEAN_RGB, "float32"), np.array(pretrained.IMAGENET_STD_RGB, "float32"), count]
    )
    paths["imagenet"] = str(folder / "b0_imagenet.weights.h5")
    model.save_weights(paths["imagenet"])
    return paths


@pytest.fixture
def offline(monkeypatch):
    """No network and nothing cached; any download attempt fails the test."""

    def no_download(*args, **kwargs):
        raise AssertionError("a test tried to download")

    monkeypatch.setattr(pretrained, "weights_host_reachable", lambda timeout=5.0: False)
    monkeypatch.setattr(pretrained, "_in_keras_cache", lambda name: False)
    monkeypatch.setattr(file_utils, "get_file", no_download)


def _images(rng, count=2):
    return rng.integers(0, 256, (count, SIZE, SIZE, 3)).astype("float32")


def _assert_layers_equal(ours, reference, names):
    for name in names:
        for got, expected in zip(ours.get_layer(name).get_weights(), reference.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, expected, err_msg=name)


# === CAM classifier, ResNet-50 ===


@pytest.mark.parametrize("kind", ["weights", "legacy"])
def test_resnet_weights_from_a_file_equal_the_files(resnet_files, offline, rng, kind):
    model = CAMClassifier.create(4, backbone="resnet50", image_size=SIZE, backbone_weights=resnet_files[kind])
    reference = resnet_files["features"]
    names = [layer.name for layer in reference.layers if layer.weights]
    assert len(names) == 106
    _assert_layers_equal(model.backbone.features, reference, names)
    assert model.preprocessing == "caffe" and model.backbone.backbone_weights == resnet_files[kind]
    scratch = CAMClassifier.create(4, backbone="resnet50", image_size=SIZE)
    assert scratch.count_params() == model.count_params() and scratch.preprocessing == "unit"
    assert not np.array_equal(scratch.backbone.features.get_layer("conv1_conv").get_weights()[0],
                              reference.get_layer("conv1_conv").get_weights()[0])
    # The features are those of the keras model on keras' own ResNet-50 preprocessing.
    images = _images(rng)
    expected = to_numpy(reference(keras.applications.resnet50.preprocess_input(images.copy()), training=False))
    got = to_numpy(model.backbone(images, training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_preprocessing_modes_match_keras(rng):
    images = _images(rng)
    imagenet_utils = keras.applications.imagenet_utils
    for mode in ("caffe", "torch"):
        model = CAMClassifier.create(3, backbone="tiny", image_size=SIZE, preprocessing=mode)
        np.testing.assert_allclose(
            to_numpy(model.backbone.image_preprocessing(images)),
            imagenet_utils.preprocess_input(images.copy(), mode=mode),
            rtol=1e-5, atol=1e-4,
        )
    model = CAMClassifier.create(3, backbone="tiny", image_size=SIZE)
    np.testing.assert_allclose(to_numpy(model.backbone.image_preprocessing(images)), images / 255.0, rtol=1e-6)
    with pytest.raises(ValueError, match="Received: preprocessing='tf'"):
        CAMClassifier.create(3, backbone="tiny", image_size=SIZE, preprocessing="tf")


def test_pretrained_cam_saves_and_loads_without_the_file(resnet_files, offline, rng, tmp_path, monkeypatch):
    model = CAMClassifier.create(4, backbone="resnet50", image_size=SIZE, backbone_weights=resnet_files["weights"])
    images = _images(rng)
    expected = to_numpy(model(images, training=False)["probabilities"])
    model.save(tmp_path / "cam.keras")

    monkeypatch.setattr(pretrained, "application", _architecture_only(pretrained.application))
    loaded = keras.models.load_model(tmp_path / "cam.keras")
    assert loaded.preprocessing == "caffe" and loaded.backbone.backbone_weights == resnet_files["weights"]
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(to_numpy(loaded(images, training=False)["probabilities"]), expected, rtol=1e-5, atol=1e-6)


def _architecture_only(application):
    def build(builder, weights, *args, **kwargs):
        assert weights is None, "loading a saved model must not read the weights source"
        return application(builder, weights, *args, **kwargs)

    return build


def test_imagenet_without_network_fails_at_once_and_says_what_to_do(offline):
    with pytest.raises(RuntimeError) as error:
        CAMClassifier.create(4, backbone="resnet50", image_size=SIZE, backbone_weights="imagenet")
    message = str(error.value)
    assert "ResNet50(weights=\"imagenet\").save_weights(" in message
    assert "backbone_weights=\"resnet50_imagenet.weights.h5\"" in message
    assert message.endswith("Received: backbone_weights='imagenet'")
    with pytest.raises(RuntimeError, match="EfficientNetB0.*Received: embedder_weights='imagenet'"):
        PatchPUClassifier.create(4, embedder_weights="imagenet", **TINY)


def test_imagenet_download_failure_is_the_same_clear_error(monkeypatch):
    def failing_download(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- [Errno -3] name resolution")

    monkeypatch.setattr(pretrained, "weights_host_reachable", lambda timeout=5.0: True)
    monkeypatch.setattr(pretrained, "_in_keras_cache", lambda name: False)
    monkeypatch.setattr(file_utils, "get_file", failing_download)
    with pytest.raises(RuntimeError, match="URL fetch failure.*save_weights.*Received: backbone_weights='imagenet'"):
        CAMClassifier.create(4, backbone="resnet50", image_size=SIZE, backbone_weights="imagenet")


def test_invalid_weights_arguments(tmp_path, efficientnet_files, offline):
    with pytest.raises(ValueError, match="resnet50' only.*Received: backbone='tiny'"):
        CAMClassifier.create(4, backbone="tiny", image_size=SIZE, backbone_weights="imagenet")
    with pytest.raises(FileNotFoundError, match="Received: backbone_weights="):
        CAMClassifier.create(4, backbone="resnet50", image_size=SIZE, backbone_weights=str(tmp_path / "none.weights.h5"))
    with pytest.raises(ValueError, match=r"\.weights\.h5.*Received: embedder_weights='model.keras'"):
        PatchPUClassifier.create(4, embedder_weights="model.keras", **TINY)
    with pytest.raises(ValueError, match="ResNet50.*Received: backbone_weights="):
        CAMClassifier.create(4, backbone="resnet50", image_size=SIZE, backbone_weights=efficientnet_files["scratch"])


# === Patch-based classifier, EfficientNet-B0 embedder ===


def _efficientnet_cut(weights):
    base = keras.applications.EfficientNetB0(weights=weights, include_top=False, input_shape=(SIZE, SIZE, 3))
    return keras.Model(base.input, base.get_layer("block3b_add").output), base


def _embedder_blocks(model, patches):
    embedder = model.backbone.embedder
    x = keras.ops.pad(patches, ((0, 0), (0, 1), (0, 1), (0, 0)))
    x = keras.activations.swish(embedder.stem_bn(embedder.stem_conv(x), training=False))
    for block in embedder.blocks:
        x = block(x, training=False)
    return to_numpy(x)


def test_embedder_weights_from_a_scratch_file_keep_unit_inputs(efficientnet_files, offline, rng):
    model = PatchPUClassifier.create(4, embedder_weights=efficientnet_files["scratch"], **{**TINY, "patch_size": SIZE, "image_size": 64})
    cut, base = _efficientnet_cut(None)
    base.load_weights(efficientnet_files["scratch"])
    _assert_layers_equal_pairs(model, base)
    assert model.preprocessing == "unit"
    assert model.count_params() == PatchPUClassifier.create(4, **{**TINY, "patch_size": SIZE, "image_size": 64}).count_params()
    patches = _images(rng)
    np.testing.assert_allclose(
        _embedder_blocks(model, pretrained.normalize_images(patches / 255.0, model.preprocessing)), to_numpy(cut(patches, training=False)), rtol=1e-4, atol=1e-4
    )


def _assert_layers_equal_pairs(model, base):
    pairs = model.backbone.embedder.efficientnet_b0_layer_names()
    assert len(pairs) == 2 + 5 * 6 + 4 * 2  # stem; 6 layers per block, 2 more with expansion (4 blocks)
    for sublayer, name in pairs:
        for got, expected in zip(sublayer.get_weights(), base.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, expected, err_msg=name)


def test_imagenet_embedder_matches_keras_efficientnet_on_raw_pixels(efficientnet_files, rng, monkeypatch):
    # keras.applications' download, replaced by the file with Keras' ImageNet statistics.
    monkeypatch.setattr(pretrained, "weights_host_reachable", lambda timeout=5.0: True)
    monkeypatch.setattr(file_utils, "get_file", lambda *args, **kwargs: efficientnet_files["imagenet"])
    model = PatchPUClassifier.create(4, embedder_weights="imagenet", **{**TINY, "patch_size": SIZE, "image_size": 64})
    assert model.preprocessing == "torch" and model.backbone.embedder_weights == "imagenet"
    cut, base = _efficientnet_cut("imagenet")  # with Keras' extra rescaling for these weights
    _assert_layers_equal_pairs(model, base)
    patches = _images(rng)
    np.testing.assert_allclose(
        _embedder_blocks(model, pretrained.normalize_images(patches / 255.0, model.preprocessing)), to_numpy(cut(patches, training=False)), rtol=1e-4, atol=1e-4
    )
    # The same file given as a path: the same weights and preprocessing.
    from_path = PatchPUClassifier.create(4, embedder_weights=efficientnet_files["imagenet"], **{**TINY, "patch_size": SIZE, "image_size": 64})
    assert from_path.preprocessing == "torch"
    _assert_layers_equal_pairs(from_path, base)


def test_pretrained_patch_model_saves_and_loads_without_the_file(efficientnet_files, offline, rng, tmp_path, monkeypatch):
    model = PatchPUClassifier.create(4, embedder_weights=efficientnet_files["imagenet"], **TINY)
    images = _images(rng)
    expected = to_numpy(model(images, training=False)["probabilities"])
    model.save(tmp_path / "patch.keras")
    monkeypatch.setattr(pretrained, "application", _architecture_only(pretrained.application))
    loaded = keras.models.load_model(tmp_path / "patch.keras")
    assert loaded.preprocessing == "torch" and loaded.backbone.embedder_weights == efficientnet_files["imagenet"]
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(to_numpy(loaded(images, training=False)["probabilities"]), expected, rtol=1e-5, atol=1e-6)
    scratch = PatchPUClassifier.create(4, **TINY)
    assert scratch.backbone.get_config()["preprocessing"] == "unit" and scratch.backbone.get_config()["embedder_weights"] is None
