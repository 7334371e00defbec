"""Training on several devices with the engines Keras builds on (docs/scaling.md).

The recipe key `distribute` chooses: "none" (one device, the default) or
"auto" (every visible device of the backend):

- JAX: `keras.distribution.DataParallel` over `keras.distribution.list_devices()`.
  One program runs over the global batch, split along the batch axis; weights,
  optimizer state, `LossState` tables and metric buffers are replicated, so
  batch statistics and every loss see the global batch. Several hosts: set
  `KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES` and
  `KERAS_DISTRIBUTION_PROCESS_ID` on every host; `keras.distribution.initialize()`
  reads them.
- TensorFlow: `tf.distribute.MirroredStrategy` over the GPUs (the CPUs when
  there is no GPU); with `TF_CONFIG` set, `MultiWorkerMirroredStrategy` over the
  hosts it names. The model, optimizer and metrics are built in the strategy's
  scope and Keras distributes the `tf.data` pipeline (each replica gets its slice
  of every global batch). Batch normalization is synchronized (statistics over
  the global batch, as on one device); stateful losses are refused (see
  `check_loss`).
- PyTorch: Keras' PyTorch trainer runs on one device; "auto" is refused.

`batch_size` stays the global batch and the learning rate is not changed: a
recipe run on N devices makes the same steps as on one.
"""

import contextlib
import os

import keras

from patchpu_keras.losses import StatefulLoss

DISTRIBUTE_CHOICES = ("none", "auto")
# Environment variables `keras.distribution.initialize` reads for a JAX run on several hosts.
JAX_MULTI_HOST_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID",
)


class Distribution:
    """How a run uses its devices: `scope()` around building and training, `devices`.

    Args:
        mode: "none" or "auto".
    """

    def __init__(self, mode="none"):
        if mode not in DISTRIBUTE_CHOICES:
            raise ValueError(f"`distribute` must be one of {list(DISTRIBUTE_CHOICES)}. Received: distribute={mode!r}")
        self.mode = mode
        self.backend = keras.backend.backend()
        self.strategy = None
        self.jax_distribution = None
        self.devices = 1
        if mode == "none":
            return
        if self.backend == "torch":
            raise ValueError(
                "`distribute='auto'` is not supported on the PyTorch backend: Keras' PyTorch trainer "
                "runs `fit` on one device and has no data-parallel mode. Train on several devices with "
                "KERAS_BACKEND=jax or KERAS_BACKEND=tensorflow, or use --set distribute=none. "
                "Received: distribute='auto', backend='torch'"
            )
        if self.backend == "jax":
            if all(name in os.environ for name in JAX_MULTI_HOST_VARIABLES):
                keras.distribution.initialize()
            devices = keras.distribution.list_devices()
            self.devices = len(devices)
            self.jax_distribution = keras.distribution.DataParallel(devices=devices)
        else:
            import tensorflow as tf

            if "TF_CONFIG" in os.environ:
                self.strategy = tf.distribute.MultiWorkerMirroredStrategy()
            else:
                gpus = tf.config.list_logical_devices("GPU")
                devices = gpus or tf.config.list_logical_devices("CPU")
                self.strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
            self.devices = int(self.strategy.num_replicas_in_sync)

    @classmethod
    def from_config(cls, config):
        return cls(config.get("distribute") or "none")

    @property
    def distributed(self):
        return self.mode != "none"

    @contextlib.contextmanager
    def scope(self):
        """Where the model is built, compiled and trained."""
        if self.strategy is not None:
            with self.strategy.scope():
                yield
        elif self.jax_distribution is not None:
            previous = keras.distribution.distribution()
            keras.distribution.set_distribution(self.jax_distribution)
            try:
                yield
            finally:
                keras.distribution.set_distribution(previous)
        else:
            yield

    @property
    def in_graph_map(self):
        """Whether the compiled `MeanAveragePrecision` sees every validation image once.

        True on one device and under JAX's `DataParallel` (one program over the
        global batch); False under a `tf.distribute` strategy, where each replica
        would write its slice into the same buffer rows: the validation mAP is
        then computed from `predict` (which gathers the replicas' outputs in
        order) by `ValidationMeanAveragePrecision`.
        """
        return self.strategy is None

    def prepare_model(self, model):
        """Under tf.distribute, batch normalization computes its statistics over the global batch.

        Keras' `BatchNormalization(synchronized=True)` all-reduces the moments
        across replicas (TensorFlow only). The flag is read at call time and is
        not part of the saved model (a model's file holds its constructor
        arguments and weights), so the file loads on every backend.
        """
        if self.strategy is not None:
            for layer in model._flatten_layers(include_self=False):
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        return model

    def check_loss(self, loss):
        """Refuses a stateful loss under a `tf.distribute` strategy, naming the alternative."""
        if self.strategy is not None and isinstance(loss, StatefulLoss):
            raise ValueError(
                f"The {type(loss).__name__} loss keeps per-image tables that every training step "
                "rewrites; under tf.distribute each replica would write its own copy. Train it on several "
                "devices with KERAS_BACKEND=jax (one program over the global batch: the same result "
                "as on one device), or on one device with --set distribute=none. "
                f"Received: distribute='auto', backend='tensorflow', loss={type(loss).__name__}"
            )

    def check_model_config(self, config):
        """Refuses `rematerialize_embedder` under a `tf.distribute` strategy, naming the alternatives.

        A rematerialised block updates its batch norms' moving statistics
        outside the recomputed function (`layers/rematerialization.py`), which
        Keras' synchronized batch normalization (all-reduced moments, set by
        `prepare_model`) does not allow.
        """
        if self.strategy is not None and config.get("rematerialize_embedder"):
            raise ValueError(
                "rematerialize_embedder needs batch norms that update their moving statistics outside "
                "the recomputed blocks, and under tf.distribute they are synchronized across replicas, "
                "which does not allow it. Train on several devices with KERAS_BACKEND=jax, or keep "
                "tf.distribute with --set rematerialize_embedder=false. "
                "Received: distribute='auto', backend='tensorflow', rematerialize_embedder=True"
            )

    def check_batches(self, batch_size, num_images, split):
        """Every batch, the last one included, must split evenly over the devices."""
        last = num_images % batch_size
        if self.devices > 1 and (batch_size % self.devices or last % self.devices):
            raise ValueError(
                f"With {self.devices} devices every batch is split in {self.devices} equal parts: "
                f"batch_size={batch_size} and the last {split} batch of {last or batch_size} images must "
                f"be multiples of {self.devices}. Choose a batch_size that is (and, if needed, a number "
                f"of {split} images). Received: batch_size={batch_size}, {num_images} {split} images"
            )


class ValidationMeanAveragePrecision(keras.callbacks.Callback):
    """Puts `val_map` into the epoch logs, from `predict` on the validation set.

    Used under a `tf.distribute` strategy instead of the compiled metric (see
    `Distribution.in_graph_map`); listed before the callbacks that read the
    logs (TensorBoard, the checkpoint).

    Args:
        dataset: the validation `tf.data.Dataset` with `full_labels`.
        batch_size: int.
    """

    def __init__(self, dataset, batch_size):
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size

    def on_epoch_end(self, epoch, logs=None):
        import numpy as np

        from patchpu_keras.inference import predict_labelled
        from patchpu_keras.metrics import per_class_average_precision

        outputs = predict_labelled(self.model, self.dataset, self.batch_size)
        if logs is not None:
            logs["val_map"] = float(np.nanmean(
                per_class_average_precision(outputs["full_labels"], outputs["probabilities"])
            ))
