"""``python -m app ARGS`` is ``sweepnet ARGS``."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
