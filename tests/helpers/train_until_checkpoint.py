"""Runs `cli.py train` and hangs right after a given checkpoint, so a test can SIGKILL it there.

    python tests/helpers/train_until_checkpoint.py EPOCH STEP train --recipe demo --out DIR ...

The real command line runs unchanged, except that right after the checkpoint
of (EPOCH epochs done, STEP steps into the next) is written it prints
`CHECKPOINT EPOCH STEP` and sleeps: the test then kills the process at a known
point of the run instead of racing a timer.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from patchpu_keras.training.run_checkpoint import RunCheckpoint  # noqa: E402

HANG_AT = (int(sys.argv[1]), int(sys.argv[2]))
original_save = RunCheckpoint.save


def save_then_hang(self, epoch, step):
    original_save(self, epoch, step)
    if (epoch, step) == HANG_AT:
        print(f"CHECKPOINT {epoch} {step}", flush=True)
        time.sleep(600)


RunCheckpoint.save = save_then_hang

if __name__ == "__main__":
    from cli import cli

    cli(sys.argv[3:])
