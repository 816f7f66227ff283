"""``python -m headrace``: the same command line as the ``headrace`` console script."""

from __future__ import annotations

from headrace.cli import main

main()
