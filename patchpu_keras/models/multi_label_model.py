import contextlib

import keras
import numpy as np
from keras import ops

from patchpu_keras import labels as label_utils
from patchpu_keras.labels import FULL_LABELS, INDEX, OBSERVED_LABELS
from patchpu_keras.losses.loss_state_callback import LossStateCallback
from patchpu_keras.losses.observed_label_loss import ObservedLabelLoss
from patchpu_keras.losses.stateful_loss import StatefulLoss
from patchpu_keras.metrics.classification import DEFAULT_THRESHOLD
from patchpu_keras.models.pretrained import check_preprocessing, normalize_images


class MultiLabelModel(keras.Model):
    """What every patchpu-keras model shares: inputs, targets, losses, metrics.

    Subclasses build their layers and implement `call` on the images returned
    by `prepare_images`, and return a dict with at least `probabilities`.

    - Inputs: images `(batch, height, width, channels)`, values in [0, 255],
      any numeric dtype; 1 or 2 channels are repeated to RGB, alpha is dropped,
      any size other than `image_size x image_size` is resized bilinearly,
      then scaled as `preprocessing` says (saved with the model).
    - Targets: observed labels (+1 / 0 / -1) or a dict with `observed_labels`,
      `full_labels` ({0, 1}) and `index` (`patchpu_keras.labels`).
    - `compute_loss` hands the whole output dict to losses of
      `patchpu_keras.losses`; a stateful loss (ROLE, LL, EN + CL, EM + APL)
      reads and writes the model's `loss_state` during training, the same code
      on every backend. A plain Keras loss sees the probabilities.
    - Compiled metrics are updated against `full_labels`, only when the target
      carries them.
    - Mixed precision: `dtype="mixed_bfloat16"` (or `"mixed_float16"`, or the
      global `keras.config.set_dtype_policy`) computes in 16 bits with float32
      weights; every output of the returned dict is float32, so losses and
      metrics see float32. The policy is saved with the model.

    Args:
        num_labels: int, L.
        image_size: int, side of the square image the model works on.
        label_names: optional list of L distinct names, saved with the model.
        loss_state: optional `LossState` (or its serialized config) of a stateful
            loss, built by `loss.make_state(observed_labels)`.
        preprocessing: input scaling, one of
            `patchpu_keras.models.pretrained.PREPROCESSING`: `"unit"` ([0, 1],
            from scratch), `"caffe"` (ImageNet ResNet-50) or `"torch"` (ImageNet
            EfficientNet-B0).
        thresholds: optional list of L floats in [0, 1], the per-class decision
            thresholds saved with the model: label `c` is predicted when
            `probabilities[:, c] >= thresholds[c]` (`cli.py predict`, the
            export's `labels` output). Chosen on a validation split with
            `patchpu_keras.thresholds.choose_thresholds`; `None` is 0.5 for
            every class.
    """

    def __init__(
        self, num_labels, image_size, label_names=None, loss_state=None, preprocessing="unit",
        thresholds=None, **kwargs
    ):
        super().__init__(**kwargs)
        check_preprocessing(preprocessing)
        if int(num_labels) != num_labels or num_labels < 1:
            raise ValueError(f"`num_labels` must be an integer >= 1. Received: num_labels={num_labels}")
        if label_names is not None:
            label_names = [str(name) for name in label_names]
            if len(label_names) != num_labels or len(set(label_names)) != num_labels:
                raise ValueError(
                    f"`label_names` must be {num_labels} distinct names. "
                    f"Received: label_names={label_names}"
                )
        if isinstance(loss_state, dict):
            loss_state = keras.saving.deserialize_keras_object(loss_state)
        if loss_state is not None and loss_state.num_labels != num_labels:
            raise ValueError(
                f"`loss_state` must have {num_labels} columns. "
                f"Received: loss_state.num_labels={loss_state.num_labels}"
            )
        self.num_labels = int(num_labels)
        self.image_size = int(image_size)
        self.label_names = label_names
        self.loss_state = loss_state
        self.preprocessing = preprocessing
        self.set_thresholds(thresholds)

    @property
    def thresholds(self):
        """The per-class decision thresholds, a float32 array `(L,)` (0.5 everywhere when unset)."""
        if self.threshold_values is None:
            return np.full(self.num_labels, DEFAULT_THRESHOLD, dtype="float32")
        return np.asarray(self.threshold_values, dtype="float32")

    def set_thresholds(self, values):
        """Sets the per-class decision thresholds (see `thresholds` in the class docstring).

        Args:
            values: `None` (0.5 everywhere) or L floats in [0, 1], e.g.
                `patchpu_keras.thresholds.choose_thresholds(...).thresholds`.
        """
        if values is not None:
            try:
                checked = np.asarray(values, dtype="float64")
            except (TypeError, ValueError):
                checked = None
            if (
                checked is None or checked.shape != (self.num_labels,)
                or not np.all(np.isfinite(checked)) or np.any((checked < 0) | (checked > 1))
            ):
                raise ValueError(
                    f"`thresholds` must be None or {self.num_labels} floats in [0, 1], one per label. "
                    f"Received: thresholds={values!r}"
                )
            values = tuple(float(value) for value in checked)
        # A tuple of Python floats: JSON in get_config, not tracked by Keras.
        self.threshold_values = values

    @contextlib.contextmanager
    def layer_policy(self):
        """Sublayers created inside get the model's dtype policy (Keras does not pass it down)."""
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.dtype_policy)
        try:
            yield
        finally:
            keras.config.set_dtype_policy(previous)

    @staticmethod
    def float32_outputs(outputs):
        """The output dict with every floating tensor cast to float32 (mixed precision)."""
        return {
            key: ops.cast(value, "float32") if "float" in keras.backend.standardize_dtype(value.dtype) else value
            for key, value in outputs.items()
        }

    def build(self, input_shape=None):
        # Sublayers are built in __init__ (every shape is known from the config).
        self.built = True

    def prepare_images(self, images):
        """Images as float RGB of size `image_size`, scaled as `preprocessing` says."""
        x = ops.cast(images, self.compute_dtype)
        channels = x.shape[-1]
        if channels in (1, 2):
            x = ops.concatenate([x[..., :1]] * 3, axis=-1)
        elif channels == 4:
            x = x[..., :3]
        elif channels is None:
            # Only in a traced TF function relaxed to unknown channels (`predict`
            # after inputs with other channel counts): pick channels 0, 0, 0 for
            # gray (+ alpha) and 0, 1, 2 for RGB (+ alpha), decided at run time.
            gray = ops.shape(x)[-1] < 3
            x = ops.take(x, ops.where(gray, ops.zeros(3, "int32"), ops.arange(3, dtype="int32")), axis=-1)
        elif channels != 3:
            raise ValueError(
                "Images must have 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels. "
                f"Received: images.shape={tuple(images.shape)}"
            )
        if tuple(x.shape[1:3]) != (self.image_size, self.image_size):
            x = ops.image.resize(x, (self.image_size, self.image_size), interpolation="bilinear")
        return normalize_images(x / 255.0, self.preprocessing)

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
        """The layers after the (possibly pretrained) feature extractor.

        `training.build_optimizer` gives their variables `head_lr_multiplier`
        times the learning rate, as the peers fine-tune an ImageNet backbone.
        """
        raise NotImplementedError

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels = label_utils.unpack_labels(y, self.num_labels)
        loss = self.loss
        if isinstance(loss, StatefulLoss) and training:
            if self.loss_state is None:
                raise ValueError(
                    f"{type(loss).__name__} keeps per-image state: build the model with "
                    "`loss_state=loss.make_state(observed_labels)`. Received: loss_state=None"
                )
            total = loss.compute(labels, y_pred, self.loss_state)
        elif isinstance(loss, ObservedLabelLoss):
            targets = {key: value for key, value in labels.items() if key != INDEX}
            total = loss(targets, y_pred, sample_weight=sample_weight)
        else:
            # A plain Keras loss (e.g. "binary_crossentropy") sees probabilities
            # against full labels, or the observed positives when there are none.
            targets = labels.get(FULL_LABELS, ops.cast(labels[OBSERVED_LABELS] > 0, "float32"))
            return super().compute_loss(x, targets, y_pred["probabilities"], sample_weight, training)
        for extra in self.losses:
            total = total + ops.cast(ops.sum(extra), total.dtype)
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels = label_utils.unpack_labels(y, self.num_labels)
        if FULL_LABELS in labels and self._compile_metrics is not None:
            self._compile_metrics.update_state(
                labels[FULL_LABELS], y_pred["probabilities"], sample_weight
            )
            return self.get_metrics_result()
        # Without full labels (single positive training), ranking metrics are
        # meaningless: report the loss only. The compiled metrics are still
        # built, so Keras can read (and reset) them at the end of the epoch.
        if self._compile_metrics is not None and not self._compile_metrics.built:
            self._compile_metrics.build(labels[OBSERVED_LABELS], y_pred["probabilities"])
        return {"loss": self._loss_tracker.result()}

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_arrays(x, y, "fit")
        validation = kwargs.get("validation_data")
        if isinstance(validation, (tuple, list)) and len(validation) >= 2:
            self._check_arrays(validation[0], validation[1], "fit validation_data")
        if isinstance(getattr(self, "loss", None), StatefulLoss) and self.loss_state is not None:
            callbacks = list(kwargs.get("callbacks") or [])
            if not any(isinstance(c, LossStateCallback) for c in callbacks):
                callbacks.append(LossStateCallback(self.loss, self.loss_state))
            kwargs["callbacks"] = callbacks
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_arrays(x, y, "evaluate")
        return super().evaluate(x, y, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_arrays(x, None, "predict")
        return super().predict(x, *args, **kwargs)

    def _check_arrays(self, x, y, where):
        # In-memory arrays are checked before training starts; tf.data inputs are
        # checked by the pipeline that builds them (patchpu_keras.data).
        if isinstance(x, np.ndarray):
            label_utils.check_images(x, f"{where}: images")
        targets = y if isinstance(y, dict) else {OBSERVED_LABELS: y}
        for key, value in targets.items():
            if not isinstance(value, np.ndarray) or key == INDEX:
                continue
            if key == FULL_LABELS:
                label_utils.check_full_labels(value, self.num_labels, f"{where}: {key}")
            else:
                label_utils.check_observed_labels(value, self.num_labels, f"{where}: {key}")

    # === Config ===

    def get_config(self):
        return {
            "name": self.name,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "num_labels": self.num_labels,
            "image_size": self.image_size,
            "label_names": self.label_names,
            "loss_state": (
                None
                if self.loss_state is None
                else keras.saving.serialize_keras_object(self.loss_state)
            ),
            "preprocessing": self.preprocessing,
            "thresholds": None if self.threshold_values is None else list(self.threshold_values),
        }

