"""``python -m promptkit``: the command line (see :mod:`promptkit.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
