import contextlib

import keras
import numpy as np
from keras import ops

from patchpu_keras import labels as label_utils
from patchpu_keras.labels import FULL_LABELS, INDEX, OBSERVED_LABELS
from patchpu_keras.losses.observed_label_loss import ObservedLabelLoss
from patchpu_keras.losses.stateful_loss import StatefulLoss

DEFAULT_THRESHOLD = 0.5


@contextlib.contextmanager
def policy_scope(layer):
    """Sublayers created inside get `layer`'s dtype policy (Keras does not pass it down)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(layer.dtype_policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def float32_outputs(outputs):
    """The output dict with every floating tensor cast to float32 (mixed precision)."""
    return {
        key: ops.cast(value, "float32") if "float" in keras.backend.standardize_dtype(value.dtype) else value
        for key, value in outputs.items()
    }


def check_thresholds(thresholds, num_labels):
    """`thresholds` as a list of `num_labels` floats in [0, 1], or None."""
    if thresholds is None:
        return None
    try:
        values = np.asarray(thresholds, dtype="float64")
    except (TypeError, ValueError):  # not numbers at all, e.g. "abc"
        values = None
    if values is None or values.shape != (num_labels,) or not np.all((values >= 0) & (values <= 1)):
        raise ValueError(
            f"`thresholds` must be None or a list of {num_labels} numbers in [0, 1], one per label. "
            f"Received: thresholds={thresholds!r}"
        )
    return [float(value) for value in values]


def multi_label_loss(model, num_labels, x, y, y_pred, sample_weight=None, training=True, loss_state=None):
    """The loss of a batch for `model`, the compiled model (a task or a `TrainingModel`).

    A loss of `patchpu_keras.losses` sees the whole output dict; a stateful one
    (ROLE, LL, EN + CL, EM + APL) trains with `loss_state` and validates
    without it. A plain Keras loss sees the probabilities against the full
    labels, or the observed positives when there are none.
    """
    labels = label_utils.unpack_labels(y, num_labels)
    loss = model.loss
    if isinstance(loss, StatefulLoss) and training:
        if loss_state is None:
            raise ValueError(
                f"{type(loss).__name__} keeps per-image state, which lives with the training run, not in "
                "the model: train `patchpu_keras.models.TrainingModel(model, loss.make_state(observed_labels))` "
                "(docs/extending.md). Received: a model without loss_state"
            )
        total = loss.compute(labels, y_pred, loss_state)
    elif isinstance(loss, ObservedLabelLoss):
        targets = {key: value for key, value in labels.items() if key != INDEX}
        total = loss(targets, y_pred, sample_weight=sample_weight)
    else:
        targets = labels.get(FULL_LABELS, ops.cast(labels[OBSERVED_LABELS] > 0, "float32"))
        return keras.Model.compute_loss(model, x, targets, y_pred["probabilities"], sample_weight, training)
    for extra in model.losses:
        total = total + ops.cast(ops.sum(extra), total.dtype)
    return total


def multi_label_metrics(model, num_labels, x, y, y_pred, sample_weight=None):
    """Compiled metrics against `full_labels`, only when the target carries them.

    Without full labels (single positive training), ranking metrics are
    meaningless: the loss alone is reported. Metrics still unbuilt (Keras
    builds the compiled metrics on their first update) are built on the
    observed labels' shapes, so Keras can read and reset them at the end of
    the epoch.
    """
    labels = label_utils.unpack_labels(y, num_labels)
    probabilities = y_pred["probabilities"]
    if FULL_LABELS in labels:
        return keras.Model.compute_metrics(model, x, labels[FULL_LABELS], probabilities, sample_weight)
    for metric in model.metrics:
        if getattr(metric, "built", True) is False:  # only the compiled metrics' container builds
            metric.build(labels[OBSERVED_LABELS], probabilities)
    return {metric.name: metric.result() for metric in model.metrics if metric.name == "loss"}


def flat_config_error(cls, config):
    """The error for a config saved before the backbone and the task were split, saying what to do."""
    return ValueError(
        f"This {cls.__name__} config was saved before models were split into a backbone and a task "
        "(its arguments are flat, without a backbone config). Load its .keras file with "
        "`patchpu_keras.models.load_model(path)`, which maps the config and the weights onto the new "
        f"model (and drops the training run's loss_state), or build the model with "
        f"`{cls.__name__}.from_flat_config(config)`. Received: config keys={sorted(config)}"
    )


class MultiLabelModel(keras.Model):
    """What every patchpu-keras task shares: a backbone, labels, thresholds, losses, metrics.

    A task holds a backbone (`self.backbone`, which starts with
    `patchpu_keras.layers.ImagePreprocessing`) and a head, and returns a dict
    with at least `probabilities`.

    - Inputs: images `(batch, height, width, channels)`, values in [0, 255],
      any numeric dtype; the backbone's preprocessing makes them RGB of its
      `image_size`, scaled as its weights expect.
    - Targets: observed labels (+1 / 0 / -1) or a dict with `observed_labels`,
      `full_labels` ({0, 1}) and `index` (`patchpu_keras.labels`).
    - `compute_loss` hands the whole output dict to losses of
      `patchpu_keras.losses` (`multi_label_loss`). A stateful loss (ROLE, LL,
      EN + CL, EM + APL) keeps per-image tables that belong to the training
      run: it trains through `TrainingModel(model, loss_state)`, so the model
      and its `.keras` file hold what inference needs only.
    - Compiled metrics are updated against `full_labels`, only when the target
      carries them.
    - Thresholds: `model.thresholds`, one per label (0.5 until set), saved
      with the model.
    - Mixed precision: `dtype="mixed_bfloat16"` (or `"mixed_float16"`)
      computes in 16 bits with float32 weights; every output of the returned
      dict is float32. The policy is saved with the model.

    Args:
        num_labels: int, L.
        label_names: optional list of L distinct names, saved with the model.
        thresholds: optional list of L floats in [0, 1], the decision
            threshold of each label (`set_thresholds`), saved with the model.
    """

    def __init__(self, num_labels, label_names=None, thresholds=None, **kwargs):
        super().__init__(**kwargs)
        if int(num_labels) != num_labels or num_labels < 1:
            raise ValueError(f"`num_labels` must be an integer >= 1. Received: num_labels={num_labels}")
        if label_names is not None:
            label_names = [str(name) for name in label_names]
            if len(label_names) != num_labels or len(set(label_names)) != num_labels:
                raise ValueError(
                    f"`label_names` must be {num_labels} distinct names. "
                    f"Received: label_names={label_names}"
                )
        self.num_labels = int(num_labels)
        self.label_names = label_names
        self._thresholds = check_thresholds(thresholds, self.num_labels)

    @property
    def image_size(self):
        """Side of the square image the backbone works on."""
        return self.backbone.image_size

    @property
    def preprocessing(self):
        """The input scaling of the backbone (`ImagePreprocessing(scaling=...)`)."""
        return self.backbone.preprocessing

    @property
    def thresholds(self):
        """The decision threshold of each label, a float32 array `(num_labels,)` (0.5 until set)."""
        if self._thresholds is None:
            return np.full(self.num_labels, DEFAULT_THRESHOLD, "float32")
        return np.asarray(self._thresholds, "float32")

    def set_thresholds(self, values):
        """Sets the decision threshold of each label (None: back to 0.5), saved with the model.

        Args:
            values: None, or `num_labels` floats in [0, 1].
        """
        self._thresholds = check_thresholds(values, self.num_labels)

    def build(self, input_shape=None):
        # Sublayers are built in __init__ (every shape is known from the config).
        self.built = True

    def for_inference(self):
        """The model to run inference with: the same outputs, computed faster where it can be.

        `PatchPUClassifier` returns its copy with batch norms folded into the
        convolutions (`fold_batch_norm`) when it computes in float32, where the
        difference is float rounding; otherwise, and for the other models, the
        model itself. Export and `cli.py` evaluate, predict and explain use it;
        training does not (a folded model cannot train).
        """
        return self

    # === Training ===

    def head_layers(self):
        """The layers after the (possibly pretrained) backbone.

        `training.build_optimizer` gives their variables `head_lr_multiplier`
        times the learning rate, as the peers fine-tune an ImageNet backbone.
        """
        raise NotImplementedError

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return multi_label_loss(self, self.num_labels, x, y, y_pred, sample_weight, training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return multi_label_metrics(self, self.num_labels, x, y, y_pred, sample_weight)

    # In-memory arrays are checked before Keras starts (tf.data inputs are checked
    # by the pipeline that builds them, patchpu_keras.data); nothing else is added.
    def fit(self, x=None, y=None, *args, **kwargs):
        label_utils.check_arrays(x, y, self.num_labels, "fit")
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and len(validation) >= 2:
            label_utils.check_arrays(validation[0], validation[1], self.num_labels, "fit validation_data")
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        label_utils.check_arrays(x, y, self.num_labels, "evaluate")
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        label_utils.check_arrays(x, None, self.num_labels, "predict")
        return super().predict(x, *args, **kwargs)

    # === Config ===

    def get_config(self):
        return {
            "name": self.name,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_labels": self.num_labels,
            "label_names": self.label_names,
            "thresholds": self._thresholds,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # A config saved before the backbone and the task were split is flat: refused with what to do.
        config = dict(config)
        if not isinstance(config.get("backbone"), dict):
            raise flat_config_error(cls, config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"], custom_objects=custom_objects)
        return cls(**config)
