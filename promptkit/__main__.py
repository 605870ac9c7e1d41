"""``python -m promptkit``: the command line (see :mod:`promptkit._cli`)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
