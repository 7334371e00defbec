"""Export for serving: a TensorFlow SavedModel in TF Serving's layout, or ONNX.

`export_model(model, "exported/patchpu", version=1)` writes
`exported/patchpu/1/`, a SavedModel with two signatures:

- `serving_default`: `image_bytes`, a `(batch,)` string tensor of encoded
  JPEG / PNG / GIF / BMP / WebP files of any sizes, decoded
  (`tf.io.decode_image(channels=3, expand_animations=False)`) and resized
  (bilinear) to the model's `image_size` inside the graph;
- `serve_images`: `images`, a `(batch, height, width, 3)` float32 tensor with
  values in [0, 255], any height and width, resized inside the graph.

Both return `probabilities` `(batch, L)` float32, `labels` `(batch, L)` bool,
equal to `probabilities >= thresholds` with the model's per-class thresholds
(`model.thresholds`, 0.5 where unset), and `label_names` `(batch, L)` string:
the names are repeated per image because TF Serving's row ("instances") format
needs every output to share the batch dimension.

`format="onnx"` writes `exported/patchpu/1/model.onnx` (the layout Triton
expects), converted from `serve_images` with tf2onnx: input `images` float32
`(batch, height, width, 3)`, outputs `probabilities` and `labels`; the label
names and thresholds are in the model's metadata (`label_names`, `thresholds`,
JSON lists). ONNX has no image decoder op that runtimes agree on, so encoded
bytes are the SavedModel's job.

Both formats hold `model.for_inference()`: for a float32 `PatchPUClassifier`, its
copy with the embedder's batch norms folded into the convolutions (same
probabilities up to float rounding, faster). The self-check compares the export
with the model as it was given.

Exports are traced on the TensorFlow backend. On JAX or PyTorch, the model is
exported by a subprocess running `python -m patchpu_keras.export` with
`KERAS_BACKEND=tensorflow`: the `.keras` file is backend-independent, so a model
trained on any backend exports the same way.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import keras
import numpy as np

SERVING_SIGNATURE = "serving_default"
IMAGES_SIGNATURE = "serve_images"
IMAGE_BYTES_INPUT = "image_bytes"
IMAGES_INPUT = "images"
PROBABILITIES_OUTPUT = "probabilities"
LABELS_OUTPUT = "labels"
THRESHOLDS_METADATA = "thresholds"
LABEL_NAMES_OUTPUT = "label_names"
FORMATS = ("tf_saved_model", "onnx")
ONNX_FILENAME = "model.onnx"
ONNX_OPSET = 17
# An export whose own output differs from the model's by more than this is not written.
VERIFY_TOLERANCE = 1e-5


def _label_names(model):
    names = getattr(model, "label_names", None)
    return list(names) if names else [str(index) for index in range(model.num_labels)]


def _check_arguments(out_dir, version, format, force):
    if format not in FORMATS:
        raise ValueError(f"Unknown export format. Expected one of {FORMATS}. Received: format={format!r}")
    if isinstance(version, bool) or int(version) != version or version < 1:
        raise ValueError(
            "`version` must be an integer >= 1 (TF Serving loads numbered folders). "
            f"Received: version={version!r}"
        )
    target = os.path.join(os.fspath(out_dir), str(int(version)))
    if os.path.lexists(target) and not force:
        taken = [int(name) for name in os.listdir(out_dir) if name.isdigit()]
        raise FileExistsError(
            f"{target} already exists. Pass force=True (--force) to overwrite it, or export "
            f"another version (--version {max(taken + [0]) + 1} is free). "
            f"Received: out_dir={os.fspath(out_dir)!r}, version={version}"
        )
    return target


def export_model(model, out_dir, version=1, format="tf_saved_model", force=False, verify=True):
    """Exports a model for serving into `out_dir/<version>/`.

    Args:
        model: a model of `patchpu_keras.models.SUPPORTED_MODELS`
            (`PatchPUClassifier`, `CAMClassifier`), or the path of its
            `.keras` file.
        out_dir: str, the model's folder as TF Serving's `--model_base_path`
            sees it; created if needed.
        version: int >= 1, the version subfolder.
        format: `"tf_saved_model"` (default) or `"onnx"`.
        force: bool; an existing `out_dir/<version>` is replaced only if True.
        verify: bool; reload the artifact (SavedModel with TensorFlow, ONNX
            with onnxruntime) and check it gives the model's probabilities on a
            synthetic image before moving it into place.

    Returns:
        str, the SavedModel folder or the ONNX file written.

    Raises:
        FileExistsError: `out_dir/<version>` exists and `force` is False.
        ValueError: bad arguments, or `model` is a file that is not a
            patchpu-keras model.

    Example:
    ```python
    export_model("runs/demo/model.keras", "exported/demo", version=1)
    # tensorflow_model_server --model_name=demo --model_base_path=$PWD/exported/demo
    ```
    """
    from patchpu_keras.models import load_model

    target = _check_arguments(out_dir, version, format, force)
    model_path = None
    if isinstance(model, (str, os.PathLike)):
        model_path = os.fspath(model)
        model = load_model(model_path)  # fails early, with a clear error, on any backend
    if keras.backend.backend() != "tensorflow":
        return _export_in_subprocess(model, model_path, out_dir, version, format, verify)
    os.makedirs(out_dir, exist_ok=True)
    # Written beside the target, then renamed: TF Serving watches out_dir and
    # only loads numeric folder names, so it never sees a half-written version.
    staging = tempfile.mkdtemp(prefix=f".tmp-{int(version)}-", dir=out_dir)
    os.chmod(staging, 0o755)  # mkdtemp's 0o700 would hide it from a server running as another user
    served = model.for_inference()
    try:
        if format == "onnx":
            _write_onnx(served, os.path.join(staging, ONNX_FILENAME), verify, model)
        else:
            _write_saved_model(served, staging, verify, model)
        if os.path.lexists(target):
            shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
        os.replace(staging, target)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return os.path.join(target, ONNX_FILENAME) if format == "onnx" else target


# === SavedModel ===


def serving_functions(model):
    """The two serving functions of `model`, as `tf.function`s with input signatures.

    Returns:
        A dict `{SERVING_SIGNATURE: encoded images -> outputs, IMAGES_SIGNATURE:
        float images -> outputs}`; outputs are `{"probabilities", "labels",
        "label_names"}`. TensorFlow backend only.
    """
    import tensorflow as tf

    from patchpu_keras.data.image_files import decode_image, resize_image

    size = model.image_size
    names = tf.constant(_label_names(model))
    thresholds = tf.constant(model.thresholds, tf.float32)

    def outputs(images):
        probabilities = model(images, training=False)[PROBABILITIES_OUTPUT]
        batch = tf.shape(probabilities)[0]
        return {
            PROBABILITIES_OUTPUT: probabilities,
            LABELS_OUTPUT: probabilities >= thresholds,
            LABEL_NAMES_OUTPUT: tf.tile(names[None, :], [batch, 1]),
        }

    def decode_and_resize(data):
        image = decode_image(data)
        image.set_shape((None, None, 3))
        return resize_image(image, size)

    def serve_encoded(image_bytes):
        images = tf.map_fn(
            decode_and_resize, image_bytes,
            fn_output_signature=tf.TensorSpec((size, size, 3), tf.float32),
        )
        return outputs(images)

    def serve_float(images):
        return outputs(tf.image.resize(images, (size, size)))

    return {
        SERVING_SIGNATURE: tf.function(
            serve_encoded, autograph=False,
            input_signature=[tf.TensorSpec((None,), tf.string, name=IMAGE_BYTES_INPUT)],
        ),
        IMAGES_SIGNATURE: tf.function(
            serve_float, autograph=False,
            input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32, name=IMAGES_INPUT)],
        ),
    }


def _write_saved_model(served, path, verify, model):
    """Writes `served` (the model or its inference form) and checks it against `model`."""
    archive = keras.export.ExportArchive()
    archive.track(served)
    for name, function in serving_functions(served).items():
        archive.add_endpoint(name, function)
    archive.write_out(path, verbose=False)
    if verify:
        _verify_saved_model(model, path)


def _check_image(seed=0):
    """A synthetic test image of an odd size, so the graph's resize is exercised."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)


def _reference(model, image):
    from patchpu_keras.data.image_files import resize_image

    resized = resize_image(image, model.image_size).numpy()[None]
    return keras.ops.convert_to_numpy(model(resized, training=False)[PROBABILITIES_OUTPUT])


def _check_close(what, got, expected):
    difference = float(np.max(np.abs(np.asarray(got) - expected)))
    if not difference <= VERIFY_TOLERANCE:
        raise RuntimeError(
            f"The exported {what} does not reproduce the model (max abs difference "
            f"{difference:.2e} > {VERIFY_TOLERANCE}); nothing was written. "
            f"Received: difference={difference}"
        )


def _check_labels(what, model, probabilities, labels):
    expected = np.asarray(probabilities) >= model.thresholds
    if np.asarray(labels).dtype != bool or not np.array_equal(labels, expected):
        raise RuntimeError(
            f"The exported {what}'s labels differ from probabilities >= the model's thresholds; "
            f"nothing was written. Received: labels={np.asarray(labels).tolist()}, "
            f"expected {expected.tolist()}"
        )


def _verify_saved_model(model, path):
    import tensorflow as tf

    image = _check_image()
    expected = _reference(model, image)
    loaded = tf.saved_model.load(path)
    served = loaded.signatures[SERVING_SIGNATURE](
        **{IMAGE_BYTES_INPUT: tf.io.encode_png(image)[None]}
    )
    _check_close(f"{SERVING_SIGNATURE} signature", served[PROBABILITIES_OUTPUT].numpy(), expected)
    _check_labels(f"{SERVING_SIGNATURE} signature", model, served[PROBABILITIES_OUTPUT].numpy(),
                  served[LABELS_OUTPUT].numpy())
    if served[LABEL_NAMES_OUTPUT].numpy()[0].astype(str).tolist() != _label_names(model):
        raise RuntimeError(
            "The exported label names differ from the model's. "
            f"Received: {served[LABEL_NAMES_OUTPUT].numpy()[0]}"
        )
    floats = loaded.signatures[IMAGES_SIGNATURE](**{IMAGES_INPUT: tf.cast(image[None], tf.float32)})
    _check_close(f"{IMAGES_SIGNATURE} signature", floats[PROBABILITIES_OUTPUT].numpy(), expected)
    _check_labels(f"{IMAGES_SIGNATURE} signature", model, floats[PROBABILITIES_OUTPUT].numpy(),
                  floats[LABELS_OUTPUT].numpy())


# === ONNX ===


def _erfc_as_one_minus_erf(graph, node, name, args):
    """tf2onnx handler for Erfc (exact GELU), which ONNX lacks: erfc(x) = 1 - erf(x)."""
    node.type = "Erf"
    one = graph.make_const(f"{name}/one", np.array(1.0, dtype=np.float32))
    one_minus = graph.insert_new_node_on_output("Sub", node.output[0], name=f"{name}/one_minus")
    graph.replace_inputs(one_minus, [one.output[0], node.output[0]])
    graph.copy_shape(node.output[0], one_minus.output[0])


def _write_onnx(served, path, verify, model):
    """Writes `served` (the model or its inference form) and checks it against `model`."""
    try:
        import onnx
        import tf2onnx
    except ImportError as error:
        raise ImportError(
            "ONNX export needs tf2onnx and onnx: pip install 'patchpu-keras[export]'. "
            f"Received: {error}"
        ) from None
    import tensorflow as tf

    size = served.image_size
    thresholds = served.thresholds
    input_signature = [tf.TensorSpec((None, None, None, 3), tf.float32, name=IMAGES_INPUT)]

    # The float signature without `label_names` (they go in the metadata).
    @tf.function(input_signature=input_signature, autograph=False)
    def probabilities_and_labels(images):
        resized = tf.image.resize(images, (size, size))
        probabilities = served(resized, training=False)[PROBABILITIES_OUTPUT]
        # A constant made inside the function: tf2onnx would take a captured one for an input.
        return {PROBABILITIES_OUTPUT: probabilities, LABELS_OUTPUT: probabilities >= tf.constant(thresholds)}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_model, _ = tf2onnx.convert.from_function(
            probabilities_and_labels,
            input_signature=input_signature,
            opset=ONNX_OPSET,
            custom_op_handlers={"Erfc": (_erfc_as_one_minus_erf, [])},
        )
    metadata = {
        LABEL_NAMES_OUTPUT: json.dumps(_label_names(model)),
        THRESHOLDS_METADATA: json.dumps([float(value) for value in model.thresholds]),
        "image_size": str(model.image_size),
        "model_class": type(model).__name__,
    }
    for key, value in metadata.items():
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(onnx_model, path)
    if verify:
        _verify_onnx(model, path)


def _verify_onnx(model, path):
    try:
        import onnxruntime
    except ImportError:
        warnings.warn("onnxruntime is not installed: the ONNX file was not checked.", stacklevel=3)
        return
    image = _check_image()
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(
        [PROBABILITIES_OUTPUT, LABELS_OUTPUT], {IMAGES_INPUT: image[None].astype(np.float32)}
    )
    _check_close("ONNX model", probabilities, _reference(model, image))
    _check_labels("ONNX model", model, probabilities, labels)


# === Other backends ===


def _export_in_subprocess(model, model_path, out_dir, version, format, verify):
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as scratch:
        if model_path is None:
            model_path = os.path.join(scratch, "model.keras")
            model.save(model_path)
        command = [
            sys.executable, "-m", "patchpu_keras.export", model_path, os.fspath(out_dir),
            "--version", str(int(version)), "--format", format, "--force",
        ]
        if not verify:
            command.append("--no-verify")
        # --force: the caller already checked out_dir/<version> against its own force flag.
        result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            "Export on the TensorFlow backend (a subprocess, since the active backend is "
            f"{keras.backend.backend()}) failed:\n{result.stderr.strip()[-4000:]}"
        )
    return result.stdout.strip().splitlines()[-1]


def main(argv=None):
    """`python -m patchpu_keras.export MODEL OUT_DIR`: the export subprocess's entry point."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("model")
    parser.add_argument("out_dir")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--format", choices=FORMATS, default=FORMATS[0])
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--no-verify", dest="verify", action="store_false")
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        parser.error("run with KERAS_BACKEND=tensorflow")
    print(export_model(args.model, args.out_dir, args.version, args.format, args.force, args.verify))


if __name__ == "__main__":
    main()
