"""Flows that write more log than a run may keep."""

from __future__ import annotations

import logging

from headrace import flow


@flow
def noisy(lines: int = 0, width: int = 100, long_line: int = 0) -> int:
    """Prints one ``long_line``-character line (if any), then ``lines`` lines of ``width``."""
    if long_line:
        print("L" * long_line, flush=True)
        logging.getLogger(__name__).warning("W" * long_line)
    for index in range(lines):
        print(f"{index:08d}" + "x" * (width - 8), flush=False)
    return lines
