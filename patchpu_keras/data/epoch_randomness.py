"""Moving a pipeline's per-epoch randomness on, so a resumed run sees the epochs it would have.

A `shuffle(..., reshuffle_each_iteration=True)` or a
`Dataset.random(..., rerandomize_each_iteration=True)` draws new seeds each time
an iterator is made from it, from a seed generator the dataset holds; every
dataset built on it shares that generator. Making `epochs` iterators of the
shuffled names (one element each) therefore gives the pipeline built on them the
order of epoch `epochs` of an uninterrupted run, without reading any image.
"""


def advance_epochs(dataset, epochs):
    """Makes `epochs` iterators of `dataset` (one element each); returns `dataset`.

    Args:
        dataset: a `tf.data.Dataset` whose randomness changes every iteration
            (a reshuffling `shuffle`, a rerandomizing `Dataset.random`), before
            any expensive map: one element is read per epoch skipped.
        epochs: int >= 0, epochs to move on.
    """
    if epochs < 0:
        raise ValueError(f"`epochs` must be >= 0. Received: epochs={epochs}")
    for _ in range(int(epochs)):
        for _ in dataset.take(1):
            pass
    return dataset
