"""TensorBoard event files of a run (under `RUN/logs/`).

Per epoch, Keras' own `keras.callbacks.TensorBoard` writes the loss and the
learning rate (`logs/train`) and the validation loss and mAP (`logs/validation`);
it uses `tf.summary` on every backend. The held-out evaluation at the end is
written here, with `tf.summary` too: TensorFlow is used for logging as Keras
does, besides input pipelines and export.
"""

import os

LOG_DIR = "logs"


def tensorboard_callback(out_dir):
    """Keras' TensorBoard callback writing epoch scalars under `out_dir/logs/`."""
    import keras

    return keras.callbacks.TensorBoard(log_dir=os.path.join(out_dir, LOG_DIR), write_graph=False)


def write_evaluation(out_dir, mean_ap, per_class_ap, step):
    """Writes `test/map` and `test/ap/NAME` (classes with an AP) at `step` under `out_dir/logs/test`."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(os.path.join(out_dir, LOG_DIR, "test"))
    with writer.as_default():
        tf.summary.scalar("test/map", mean_ap, step=step)
        for name, ap in per_class_ap.items():
            if ap is not None:
                tf.summary.scalar(f"test/ap/{name}", ap, step=step)
    writer.close()
