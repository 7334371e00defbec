"""Start-up noise of TensorFlow silenced before it is imported, in the command line programs.

TensorFlow prints C++ log lines when it loads (`failed call to cuInit` without
a GPU, oneDNN notices, `All log messages before absl::InitializeLog()`), which
read like failures. `TF_CPP_MIN_LOG_LEVEL` stops those logged after start-up;
those written while its libraries load go straight to the process's stderr,
so the import itself runs with stderr pointed at /dev/null. Python errors are
not lost: an import that fails raises, and its traceback is printed after
stderr is back. `PATCHPU_TF_STARTUP_LOGS=1` keeps everything.

`patchpu_keras/__init__.py` calls `silence_tensorflow_startup_of_commands`
first, so it runs before any TensorFlow import, and only in the commands
(`cli.py`, `patchpu`, or a program that sets `PATCHPU_QUIET_START=1`):
a library import keeps TensorFlow's own output. This module imports nothing
heavy.
"""

import contextlib
import os
import sys

# Environment read by TensorFlow's C++ logging and XLA when they start.
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "GLOG_minloglevel": "2"}
KEEP_LOGS_VARIABLE = "PATCHPU_TF_STARTUP_LOGS"
QUIET_VARIABLE = "PATCHPU_QUIET_START"
# The command line programs, by the name they run as.
COMMANDS = ("cli.py", "patchpu")


@contextlib.contextmanager
def _stderr_to_devnull():
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def silence_tensorflow_startup():
    """Sets the quiet logging environment (unless already set) and imports TensorFlow and Keras quietly."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if os.environ.get(KEEP_LOGS_VARIABLE):
        return
    with _stderr_to_devnull():
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            pass  # reported where it is needed, with stderr back
        import keras  # noqa: F401


def silence_tensorflow_startup_of_commands():
    """`silence_tensorflow_startup` when running as a command (see the module docstring), else nothing."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if program in COMMANDS or os.environ.get(QUIET_VARIABLE):
        silence_tensorflow_startup()
