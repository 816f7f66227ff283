"""Console logging for processes that serve flows: headrace's lines, its runs' lines."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str = "info") -> None:
    """headrace's own lines (and its runs' lines) at ``level``; other libraries' warnings.

    Does nothing when the application has configured logging itself.
    """
    if logging.getLogger().handlers:
        logging.getLogger("headrace").setLevel(level.upper())
        return
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)-8s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("headrace").setLevel(level.upper())
