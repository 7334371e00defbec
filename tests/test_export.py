"""Export: SavedModel (TF Serving layout) and ONNX, checked in processes that never import patchpu_keras.

The model is trained on another backend (`trained_elsewhere`), loaded and
exported on this one, and the exports are called from plain TensorFlow and from
onnxruntime in subprocesses; their probabilities must match `model.predict` on
this backend for the same decoded images, and their boolean `labels` must be
`probabilities >= thresholds` with the per-class thresholds saved in the model.
"""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli
from patchpu_keras.data.image_reader import read_image
from patchpu_keras.export import export_model
from tests.conftest import run_helper

TOLERANCE = 1e-5


def _plain_env():
    """No PYTHONPATH: the clients must not even find this worktree's package through it."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


@pytest.fixture(scope="module")
def model(trained_model):
    return trained_model


@pytest.fixture(scope="module")
def decoded(image_files):
    return {name: read_image(path) for name, path in image_files.items()}


@pytest.fixture(scope="module")
def expected(model_predict, decoded):
    """`model.predict` on each decoded image at its own size (the model resizes inside)."""
    return {name: model_predict(image[None])[0] for name, image in decoded.items()}


@pytest.fixture(scope="module")
def thresholded(trained_elsewhere, expected, tmp_path_factory):
    """The trained model saved with per-class thresholds that split the test images' scores.

    Each class's threshold sits in the widest gap between its scores over the
    images, so some images have the label and others not, and a difference
    of float rounding between the export and the model cannot move a label.
    """
    from patchpu_keras.models import load_model

    model = load_model(trained_elsewhere["model"])
    ordered = np.sort(np.stack(list(expected.values())), axis=0)
    gaps = np.diff(ordered, axis=0)
    widest = np.argmax(gaps, axis=0)
    columns = np.arange(ordered.shape[1])
    assert gaps[widest, columns].min() > 1e-4
    model.set_thresholds((ordered[widest, columns] + ordered[widest + 1, columns]) / 2)
    path = str(tmp_path_factory.mktemp("thresholded") / "model.keras")
    model.save(path)
    return {"model": path, "thresholds": model.thresholds}


def _labels_of(probabilities, thresholds):
    labels = np.asarray(probabilities) >= thresholds
    assert labels.any(axis=0).all() and not labels.all(axis=0).any()  # every class both ways
    return labels.tolist()


@pytest.fixture(scope="module")
def saved_model_dir(thresholded, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "patchpu"
    result = CliRunner().invoke(
        cli, ["export", "--model", thresholded["model"], "--out", str(out), "--version", "3"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {os.path.join(str(out), '3')}"
    return out / "3"


def test_the_model_trained_on_another_backend_computes_the_same_here(trained_elsewhere, model_predict):
    reference = np.load(trained_elsewhere["reference"])
    # Another backend whenever one is installed (always in CI; see conftest.training_backend).
    assert str(reference["backend"]) == trained_elsewhere["backend"]
    probabilities = model_predict(reference["images"])
    # The outputs differ between images, so equality is not a coincidence.
    assert probabilities.std(axis=0).max() > 0.005
    np.testing.assert_allclose(probabilities, reference["probabilities"], atol=TOLERANCE, rtol=0)


def test_saved_model_serves_encoded_images_from_plain_tensorflow(saved_model_dir, image_files, model, expected,
                                                                 thresholded, tmp_path):
    names = list(image_files)
    output = json.loads(run_helper(
        "plain_tf_client.py", saved_model_dir, *(image_files[name] for name in names),
        env=_plain_env(), cwd=tmp_path,
    ))
    assert "patchpu_keras" not in output["imported"]
    assert output["signatures"] == ["serve_images", "serving_default"]
    want = np.stack([expected[name] for name in names])
    assert np.abs(want - want[0]).max() > 0.01  # the images get different scores
    served = np.asarray(output["serving_default"]["probabilities"])
    assert served.shape == (len(names), model.num_labels)
    assert np.abs(served - want).max() <= TOLERANCE
    from_floats = np.asarray(output["serve_images"]["probabilities"])
    assert np.abs(from_floats - want).max() <= TOLERANCE
    assert output["serving_default"]["label_names"] == [model.label_names] * len(names)
    # The labels the model's thresholds select, computed in the clean process.
    assert output["dtypes"] == {"probabilities": "float32", "labels": "bool", "label_names": "string"}
    assert output["serving_default"]["labels"] == _labels_of(want, thresholded["thresholds"])
    assert output["serve_images"]["labels"] == _labels_of(want, thresholded["thresholds"])


def test_a_float32_patch_model_is_exported_with_its_batch_norms_folded(saved_model_dir, model):
    import tensorflow as tf

    # The probabilities are those of the unfolded model (the tests above); the variables show the fold.
    assert model.compute_dtype == "float32" and not model.backbone.folded_batch_norm
    names = {variable.name for variable in tf.saved_model.load(str(saved_model_dir)).variables}
    assert {"embedder/stem_conv/bias:0", "embedder/block3b/dwconv/bias:0"} <= names
    assert not any("moving_mean" in name or "moving_variance" in name for name in names)


def test_saved_model_cli_lists_both_signatures(saved_model_dir, model):
    command = shutil.which("saved_model_cli")
    command = [command] if command else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    result = subprocess.run(
        command + ["show", "--all", "--dir", str(saved_model_dir)],
        capture_output=True, text=True, env=dict(_plain_env(), TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    sections = {
        chunk.split("']", 1)[0]: chunk
        for chunk in result.stdout.split("signature_def['")[1:]
    }
    assert {"serving_default", "serve_images"} <= set(sections)
    labels = model.num_labels

    def tensor(section, kind, name, dtype, shape):
        block = sections[section].split(f"{kind}['{name}'] tensor_info:")[1]
        return f"dtype: {dtype}" in block.split("name:")[0] and f"shape: {shape}" in block.split("name:")[0]

    assert tensor("serving_default", "inputs", "image_bytes", "DT_STRING", "(-1)")
    assert tensor("serve_images", "inputs", "images", "DT_FLOAT", "(-1, -1, -1, 3)")
    for section in ("serving_default", "serve_images"):
        assert tensor(section, "outputs", "probabilities", "DT_FLOAT", f"(-1, {labels})")
        assert tensor(section, "outputs", "labels", "DT_BOOL", f"(-1, {labels})")
        assert tensor(section, "outputs", "label_names", "DT_STRING", f"(-1, {labels})")
        assert "Method name is: tensorflow/serving/predict" in sections[section]


def test_an_existing_version_is_kept_without_force(saved_model_dir, trained_elsewhere):
    graph = saved_model_dir / "saved_model.pb"
    before = graph.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match=r"already exists. Pass force=True \(--force\).*--version 4 is free"):
        export_model(trained_elsewhere["model"], saved_model_dir.parent, version=3)
    result = CliRunner().invoke(
        cli, ["export", "--model", trained_elsewhere["model"], "--out", str(saved_model_dir.parent), "--version", "3"]
    )
    assert result.exit_code != 0 and "already exists" in result.output and "--force" in result.output
    assert graph.stat().st_mtime_ns == before


def _onnx_client(model_file, images, tmp_path):
    """onnx_client.py's output for float images (a dict of name -> array)."""
    arrays = tmp_path / "images.npz"
    np.savez(arrays, **{f"image_{i}": image.astype("float32") for i, image in enumerate(images.values())})
    return json.loads(run_helper("onnx_client.py", model_file, arrays, env=_plain_env(), cwd=tmp_path))


def test_onnx_export_from_the_cli_runs_in_onnxruntime_and_force_replaces(thresholded, model, decoded, expected, tmp_path):
    out = tmp_path / "onnx"
    stale = out / "1" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an older export")
    command = ["export", "--model", thresholded["model"], "--out", str(out), "--format", "onnx"]
    refused = CliRunner().invoke(cli, command)
    assert refused.exit_code != 0 and "already exists" in refused.output and "--force" in refused.output
    assert stale.exists()
    result = CliRunner().invoke(cli, command + ["--force"])
    assert result.exit_code == 0, result.output
    written = os.path.join(str(out), "1", "model.onnx")
    assert result.stdout.strip() == f"wrote {written}" and os.path.isfile(written)
    assert not stale.exists()
    assert not [name for name in os.listdir(out) if name.startswith(".tmp")]

    output = _onnx_client(written, decoded, tmp_path)
    assert output["imported"] == []  # neither TensorFlow, Keras nor patchpu_keras
    assert output["label_names"] == model.label_names
    assert output["inputs"][0][:2] == ["images", "tensor(float)"]
    got = np.asarray(output["probabilities"])
    want = np.stack([expected[name] for name in decoded])
    assert np.abs(got - want).max() <= TOLERANCE
    assert sorted(output["outputs"]) == [["labels", "tensor(bool)"], ["probabilities", "tensor(float)"]]
    assert output["labels"] == _labels_of(want, thresholded["thresholds"])
    assert output["thresholds"] == thresholded["thresholds"].tolist()


def test_export_arguments_are_checked(trained_elsewhere, tmp_path):
    with pytest.raises(ValueError, match="Received: format='keras'"):
        export_model(trained_elsewhere["model"], tmp_path, format="keras")
    with pytest.raises(ValueError, match="Received: version=0"):
        export_model(trained_elsewhere["model"], tmp_path, version=0)
    assert os.listdir(tmp_path) == []


def test_a_cam_models_exports_serve_its_probabilities_to_the_clean_clients(image_files, decoded, tmp_path):
    from patchpu_keras.models import CAMClassifier
    from tests.helpers.train_on_backend import calibrate_batch_norms

    model = CAMClassifier.create(3, backbone="tiny", image_size=32, label_names=["a", "b", "c"])
    resized = [keras.ops.convert_to_numpy(keras.ops.image.resize(image.astype("float32"), (32, 32))) for image in decoded.values()]
    calibrate_batch_norms(model, np.stack(resized))  # scores that differ between images
    model.save(tmp_path / "cam.keras")  # exported from the file: on JAX and PyTorch, by the TF subprocess
    saved = export_model(tmp_path / "cam.keras", tmp_path / "export", version=1)
    onnx_file = export_model(tmp_path / "cam.keras", tmp_path / "export", version=2, format="onnx")
    names = list(image_files)
    want = np.stack([keras.ops.convert_to_numpy(model.predict(decoded[name][None], verbose=0)["probabilities"])[0]
                     for name in names])
    assert np.abs(want - want[0]).max() > 0.01  # the images get different scores

    served = json.loads(run_helper("plain_tf_client.py", saved, *(image_files[name] for name in names),
                                   env=_plain_env(), cwd=tmp_path))
    assert "patchpu_keras" not in served["imported"]
    assert np.abs(np.asarray(served["serving_default"]["probabilities"]) - want).max() <= TOLERANCE
    assert np.abs(np.asarray(served["serve_images"]["probabilities"]) - want).max() <= TOLERANCE
    assert served["serving_default"]["label_names"] == [["a", "b", "c"]] * len(names)
    output = _onnx_client(onnx_file, {name: decoded[name] for name in names}, tmp_path)
    assert output["label_names"] == ["a", "b", "c"] and output["imported"] == []
    assert np.abs(np.asarray(output["probabilities"]) - want).max() <= TOLERANCE


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="the self-check runs in the TensorFlow process, which a monkeypatch here cannot reach")
@pytest.mark.parametrize("format", ["tf_saved_model", "onnx"])
def test_an_export_that_fails_its_self_check_is_not_written(monkeypatch, tmp_path, format):
    from patchpu_keras import export
    from patchpu_keras.models import CAMClassifier

    model = CAMClassifier.create(3, backbone="tiny", image_size=32)
    reference = export._reference
    # The artifact is checked against the model on a synthetic image: shift the model's side.
    monkeypatch.setattr(export, "_reference", lambda model, image: reference(model, image) + 1e-4)
    with pytest.raises(RuntimeError, match=r"does not reproduce the model \(max abs difference \d\.\d\de-0[45] > 1e-05\); nothing was written"):
        export_model(model, tmp_path, version=1, format=format)
    assert os.listdir(tmp_path) == []  # neither the version nor the staging folder
