"""`python -m bridge` is the same as the `bridge` console script."""

from __future__ import annotations

import sys

from bridge.cli import main as cli

if __name__ == "__main__":
    sys.exit(cli.main())
