"""Runs an exported ONNX model with onnxruntime alone: no TensorFlow, Keras or patchpu_keras.

    python tests/helpers/onnx_client.py MODEL_ONNX IMAGES_NPZ

IMAGES_NPZ holds float32 `(height, width, 3)` arrays (any sizes), run one at a
time. Prints one JSON object with `probabilities` and `labels` (one row per
array, in the npz's order), the `label_names` and `thresholds` of the model's
metadata, and the input and output names and types.
"""

import json
import sys

REFUSED = WATCHED = ("patchpu_keras", "keras", "tensorflow")


class _BlockImports:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in REFUSED:
            raise ImportError(f"{name} may not be imported: this client runs on onnxruntime alone")
        return None


sys.meta_path.insert(0, _BlockImports())

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402


def main(model_path, images_path):
    session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    images = np.load(images_path)
    outputs = [
        session.run(["probabilities", "labels"], {"images": images[key][None].astype(np.float32)})
        for key in images.files
    ]
    metadata = session.get_modelmeta().custom_metadata_map
    print(json.dumps({
        "probabilities": [probabilities[0].tolist() for probabilities, _ in outputs],
        "labels": [labels[0].tolist() for _, labels in outputs],
        "label_names": json.loads(metadata["label_names"]),
        "thresholds": json.loads(metadata["thresholds"]),
        "inputs": [(node.name, node.type, node.shape) for node in session.get_inputs()],
        "outputs": [(node.name, node.type) for node in session.get_outputs()],
        "imported": sorted({name.split(".")[0] for name in sys.modules} & set(WATCHED)),
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
