"""Calls an exported SavedModel with TensorFlow alone, never importing patchpu_keras.

    python tests/helpers/plain_tf_client.py SAVED_MODEL_DIR IMAGE [IMAGE ...]

Prints one JSON object: for `serving_default` (all images' encoded bytes in one
batch) its `probabilities`, `labels` and `label_names`, and for `serve_images`
(each image decoded with tf.io.decode_image, one call per image since sizes
differ) its `probabilities` and `labels`, each output's dtype, and which of keras / patchpu_keras got imported (importing
patchpu_keras raises), so a test can check the export needs no package code.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# patchpu_keras cannot be imported at all. Keras is not refused: `import
# tensorflow` itself imports it (TF 2.16+ wires `tf.keras` to it), though
# loading and calling the SavedModel does not use it.
REFUSED = ("patchpu_keras",)
WATCHED = ("patchpu_keras", "keras", "tf_keras")


class _BlockImports:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in REFUSED:
            raise ImportError(f"{name} may not be imported: this client runs on TensorFlow alone")
        return None


sys.meta_path.insert(0, _BlockImports())

import tensorflow as tf  # noqa: E402


def main(saved_model_dir, image_paths):
    loaded = tf.saved_model.load(saved_model_dir)
    encoded = [tf.io.read_file(path) for path in image_paths]
    served = loaded.signatures["serving_default"](image_bytes=tf.stack(encoded))
    from_floats = [
        loaded.signatures["serve_images"](
            images=tf.cast(tf.io.decode_image(data, channels=3, expand_animations=False), tf.float32)[None]
        )
        for data in encoded
    ]
    print(json.dumps({
        "signatures": sorted(loaded.signatures.keys()),
        "serving_default": {
            "probabilities": served["probabilities"].numpy().tolist(),
            "labels": served["labels"].numpy().tolist(),
            "label_names": served["label_names"].numpy().astype(str).tolist(),
        },
        "serve_images": {
            "probabilities": [output["probabilities"].numpy()[0].tolist() for output in from_floats],
            "labels": [output["labels"].numpy()[0].tolist() for output in from_floats],
        },
        "dtypes": {name: tensor.dtype.name for name, tensor in served.items()},
        "imported": sorted({name.split(".")[0] for name in sys.modules} & set(WATCHED)),
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
