"""Command line of patchpu-keras in a checkout: `python cli.py --help`.

The application lives in `patchpu_keras/cli.py`; `pip install .` installs it as
the `patchpu` command.
"""

from patchpu_keras.cli import cli, main

if __name__ == "__main__":
    main()
