from patchpu_keras.optimizers.lamb import Lamb

__all__ = ["Lamb"]
