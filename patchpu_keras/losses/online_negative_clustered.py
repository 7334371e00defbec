import keras
from keras import ops

from patchpu_keras.labels import OBSERVED_LABELS
from patchpu_keras.losses.observed_label_loss import clipped_log
from patchpu_keras.losses.online_negative import OnlineNegative


def label_cluster_terms(y_observed, attention):
    """Per-entry label-clustering terms: an observed positive's attention on the patches it owns.

    For image b, label k and patch i, `q[b, i, k] = a[b, k, i] / sum_k' a[b, k', i]`
    is the share of patch i's attention that label k takes. For an observed
    positive l the term is the cross-entropy of those shares against l,
    averaged over the patches with l's own attention as the weights:
    `C[b, l] = -sum_i a[b, l, i] log q[b, i, l]`. Unknown and observed-negative
    entries give 0. The gradient flows through both factors (see
    `label_cluster`).

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        attention: `(batch, num_labels, num_patches)` attention over patches
            (the model's `attention` output; each row sums to 1).

    Returns:
        `(batch, num_labels)` terms, >= 0, nonzero only at observed positives.
    """
    attention = ops.convert_to_tensor(attention)
    positives = ops.cast(ops.convert_to_tensor(y_observed) > 0, attention.dtype)
    log_attention = clipped_log(attention)
    # log q = log a - logsumexp over labels: a softmax over labels of each patch's attention logits.
    log_shares = log_attention - ops.logsumexp(log_attention, axis=1, keepdims=True)
    cross_entropy = -ops.sum(attention * log_shares, axis=-1)
    return positives * cross_entropy


def label_cluster(y_observed, attention):
    """Label-clustering term: each observed label's attended patches pulled toward its own codebook.

    With `a[b, k, i] = softmax_i(s[b, k, i])` the attention of eq. (1),
    `s[b, k, i] = e_label_k . e_patch_i` (times the layer's score scale), and
    `Z[b, k] = sum_n exp(s[b, k, n])`:

        q[b, i, k] = a[b, k, i] / sum_k' a[b, k', i] = softmax_k(s[b, k, i] - log Z[b, k]),
        C[b, l]    = -sum_i a[b, l, i] log q[b, i, l]     (l an observed positive of b; else 0),
        C          = 1 / (B L) sum_{b, l} C[b, l].

    `C[b, l]` is small when label l attends to patches that no other label
    attends to. Its gradient raises `s[b, l, i]` on the patches where l's
    share is high and lowers the other labels' `s[b, k, i]` on the patches l
    attends to: through `s`, each such patch embedding moves toward l's
    codebook and away from the other labels' codebooks (and those codebooks
    away from it), which clusters the patch embedding space by label. It
    reads the attention only, so any model returning `attention` can use it;
    no prior on the number of labels is needed.

    Holding the weights `a[b, l, i]` fixed instead is not the same term: with
    weights equal to l's own softmax, the gradient of `sum_i a log a` through
    `s[b, l, .]` vanishes, and what remains lowers `s[b, l, i]` where l's
    share is above its mean, spreading l's attention (measured worse,
    docs/benchmarks.md).

    Args:
        y_observed: `(batch, num_labels)` observed labels, +1 / 0 / -1.
        attention: `(batch, num_labels, num_patches)` attention over patches.

    Returns:
        Scalar, the mean over batch and labels of `C[b, l]` (logs clipped at 1e-7).

    Example:

    ```python
    # One image, two labels, two patches; label 0 observed and attending to patch 0.
    attention = [[[0.8, 0.2], [0.5, 0.5]]]
    label_cluster([[1.0, 0.0]], attention)
    # (-0.8 log(0.8 / 1.3) - 0.2 log(0.2 / 0.7)) / 2 = 0.319
    ```

    Reference:
        Jouanneau et al., VISAPP 2023, eq. (1), sec. 4.3.4 and 5 (a patch
        embedding space clustered with respect to the labels, named as future
        work).
    """
    return ops.mean(label_cluster_terms(y_observed, attention))


@keras.saving.register_keras_serializable(package="patchpu_keras")
class OnlineNegativeClustered(OnlineNegative):
    """Online negatives (`OnlineNegative`) plus the label-clustering term (`label_cluster`).

    Per entry, the online negative term of eq. (9) with `(1 - sg(p))^gamma`
    weights plus `cluster_weight` times `C[b, l]`:

        L = 1 / (B L) sum_{b, l} [ ON[b, l] + lambda C[b, l] ],

    so at `cluster_weight = 1` an observed positive's clustering cross-entropy
    weighs as much as its own `-log p`. `y_pred` must be the model's output
    dict (it needs `attention`); `PatchPUClassifier.compute_loss` passes it.

    Args:
        cluster_weight: lambda, >= 0; 0 is `OnlineNegative`.
        **kwargs: `OnlineNegative`'s (`gamma`) and the base loss's.

    Example:

    ```python
    loss = OnlineNegativeClustered(cluster_weight=1.0)
    loss({"observed_labels": [[1.0, 0.0]]},
         {"probabilities": [[0.9, 0.4]], "attention": [[[0.8, 0.2], [0.5, 0.5]]]})
    # online_negative(...) + 1.0 * label_cluster(...)
    ```

    Reference:
        Jouanneau et al., VISAPP 2023, eq. (1), (9), sec. 4.3.4 and 5.
    """

    def __init__(self, cluster_weight=1.0, name="online_negative_clustered", **kwargs):
        super().__init__(name=name, **kwargs)
        if not cluster_weight >= 0:
            raise ValueError(f"`cluster_weight` must be >= 0. Received: cluster_weight={cluster_weight!r}")
        self.cluster_weight = cluster_weight

    def entry_terms(self, labels, outputs):
        if "attention" not in outputs:
            raise ValueError(
                "OnlineNegativeClustered needs the model's `attention`; pass the output dict of "
                f"PatchPUClassifier as y_pred. Received: y_pred keys={sorted(outputs)}"
            )
        online_terms = super().entry_terms(labels, outputs)
        cluster_terms = label_cluster_terms(labels[OBSERVED_LABELS], outputs["attention"])
        return online_terms + self.cluster_weight * ops.cast(cluster_terms, online_terms.dtype)

    def get_config(self):
        return {**super().get_config(), "cluster_weight": self.cluster_weight}
