"""Rematerialised training calls whose batch norms update their moving statistics once.

`keras.remat(f)` stores only the inputs of `f` for the backward pass and runs
`f` a second time to recompute its activations there (`tf.recompute_grad`,
`jax.checkpoint`, `torch.utils.checkpoint`). A batch norm inside `f` that
assigned its moving statistics would assign them twice per step on the
backends that rerun the Python function, and the second update would move the
averages further than the model's definition says. So inside the
rematerialised function each batch norm only normalises and returns its batch
statistics (`FusedBatchNormalization.normalize_with_statistics`); the moving
statistics are updated once, from those returned values, outside it.
"""

import keras


def apply_batch_norm(batch_norm, x, training, statistics=None):
    """`batch_norm(x)`, `x` when the batch norm is folded (None), or the deferred-update form.

    Args:
        batch_norm: a `FusedBatchNormalization`, or None.
        x: its input.
        training: the call's `training`.
        statistics: None for an ordinary call. Inside `rematerialized_call`, a
            list: a batch norm that would update its moving statistics
            normalises with the batch's and appends `(batch_norm, (mean,
            variance))` instead; one that would not (inference, frozen) is
            called as usual, which assigns nothing.
    """
    if batch_norm is None:
        return x
    if statistics is None or not (training and batch_norm.trainable):
        return batch_norm(x, training=training)
    if not batch_norm.defers_update(training):
        raise ValueError(
            "A rematerialised layer needs batch norms whose moving statistics can be updated "
            "outside the recomputed function (`FusedBatchNormalization` without masks, renorm or "
            f"synchronized statistics). Received: {batch_norm.name} with "
            f"synchronized={batch_norm.synchronized}, renorm={batch_norm.renorm}"
        )
    outputs, batch_statistics = batch_norm.normalize_with_statistics(x)
    statistics.append((batch_norm, batch_statistics))
    return outputs


def rematerialized_call(branch, inputs):
    """`branch(inputs, statistics)` under `keras.remat`, then each batch norm's update, once.

    Args:
        branch: `branch(x, statistics) -> y`, pure but for its batch norms,
            which it applies with `apply_batch_norm(..., statistics)`.
        inputs: the tensor `branch` starts from; only it is kept for the
            backward pass.

    Returns:
        `branch`'s output, after the moving statistics of its batch norms are
        updated from this batch.
    """
    order = []

    def forward(x):
        statistics = []
        outputs = branch(x, statistics)
        if not order:  # the forward pass; a recomputation applies the same batch norms
            order.extend(batch_norm for batch_norm, _ in statistics)
        return (outputs, *[value for _, pair in statistics for value in pair])

    outputs, *flat = keras.remat(forward)(inputs)
    for index, batch_norm in enumerate(order):
        batch_norm.update_moving_statistics((flat[2 * index], flat[2 * index + 1]))
    return outputs
