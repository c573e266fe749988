"""`python -m bridge` is the same as the `bridge` console script."""

from __future__ import annotations

import sys

from bridge import cli

if __name__ == "__main__":
    sys.exit(cli.main())
