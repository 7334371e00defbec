import keras


def unit_variance_scaling(mode="fan_in"):
    """The paper's initialisation (sec. 4.1.2): variance scaling with scale 1.

    `mode="fan_in"` for kernels applied to their first axis; `"fan_out"` for
    `(num_labels, features)` tables whose rows are dotted with feature vectors,
    so every dot product starts with unit variance.
    """
    return keras.initializers.VarianceScaling(
        scale=1.0, mode=mode, distribution="truncated_normal"
    )
