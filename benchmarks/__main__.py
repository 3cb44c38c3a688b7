"""`python -m benchmarks [--objects N] [--out DIR] [--quick]`: run every benchmark and write the report."""

from __future__ import annotations

import sys

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
