import keras
from keras import ops

from patchpu_keras.labels import OBSERVED_LABELS
from patchpu_keras.losses.observed_label_loss import ObservedLabelLoss, binary_terms


def weak_negative_targets(y_observed, label_embeddings, theta=0.0):
    """Negative weights of every entry from label-embedding self-similarities.

    With `sim[l, k]` the cosine similarity between the image's representations
    of labels l and k, `beta[l, k] = sim[l, k]` if `sim[l, k] > theta` else 0
    (eq. 7). An unknown label's weight is the max of `beta[l, k]` over the
    observed positives k (eq. 8): a label whose representation looks like a
    positive's found no evidence of its own. Observed negatives weigh 1 and
    observed positives 0. A row without an observed positive has no weak
    negatives (weights 0 for its unknowns). The result carries no gradient.

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        label_embeddings: `(batch, num_labels, features)`.
        theta: similarity threshold of eq. (7).

    Returns:
        `(batch, num_labels)` weights in [0, 1] for the `-log(1 - p)` terms.
    """
    embeddings = ops.stop_gradient(ops.convert_to_tensor(label_embeddings))
    y_observed = ops.cast(y_observed, embeddings.dtype)
    norms = ops.sqrt(ops.sum(ops.square(embeddings), axis=-1, keepdims=True))
    normalized = embeddings / ops.maximum(norms, 1e-12)
    similarity = ops.einsum("blf,bkf->blk", normalized, normalized)
    beta = ops.where(similarity > theta, similarity, ops.zeros_like(similarity))
    positives = ops.cast(y_observed > 0, similarity.dtype)
    # beta >= 0 wherever it counts (theta >= 0), and masked entries are 0, so the
    # max over positives is 0 in a row with no positive instead of -inf.
    unknown_weights = ops.max(beta * positives[:, None, :], axis=-1)
    unknown_weights = ops.maximum(unknown_weights, 0.0)
    weights = ops.where(
        y_observed < 0,
        ops.ones_like(unknown_weights),
        ops.where(y_observed > 0, ops.zeros_like(unknown_weights), unknown_weights),
    )
    return ops.stop_gradient(weights)


def weak_negative(y_observed, probabilities, label_embeddings, theta=0.0):
    """Weak negative loss (WN).

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        probabilities: `(batch, num_labels)` predicted probabilities.
        label_embeddings: `(batch, num_labels, features)` per-label image
            representations (the model's `label_embeddings` output).
        theta: similarity threshold of eq. (7).

    Returns:
        Scalar, the mean over batch and labels of `-log p` for observed
        positives and `-w log(1 - p)` for the others, w from
        `weak_negative_targets`, logs clipped at 1e-7.

    Reference:
        Jouanneau et al., VISAPP 2023, eq. (6)-(9).
    """
    return ops.mean(_weak_negative_terms(y_observed, probabilities, label_embeddings, theta))


def _weak_negative_terms(y_observed, probabilities, label_embeddings, theta):
    probabilities = ops.convert_to_tensor(probabilities)
    y_observed = ops.cast(y_observed, probabilities.dtype)
    weights = weak_negative_targets(y_observed, label_embeddings, theta)
    positives = ops.cast(y_observed > 0, probabilities.dtype)
    return binary_terms(positives, probabilities, negative_weight=weights)


@keras.saving.register_keras_serializable(package="patchpu_keras")
class WeakNegative(ObservedLabelLoss):
    """`keras.losses.Loss` of `weak_negative`.

    `y_pred` must be the model's output dict (it needs `label_embeddings`);
    `PatchPUClassifier.compute_loss` passes it.

    Args:
        theta: similarity threshold of eq. (7); 0 in the paper.
    """

    def __init__(self, theta=0.0, name="weak_negative", **kwargs):
        super().__init__(name=name, **kwargs)
        self.theta = theta

    def entry_terms(self, labels, outputs):
        if "label_embeddings" not in outputs:
            raise ValueError(
                "WeakNegative needs the model's `label_embeddings`; pass the output "
                "dict of PatchPUClassifier as y_pred. "
                f"Received: y_pred keys={sorted(outputs)}"
            )
        return _weak_negative_terms(
            labels[OBSERVED_LABELS], outputs["probabilities"], outputs["label_embeddings"],
            self.theta,
        )

    def get_config(self):
        return {**super().get_config(), "theta": self.theta}
