"""The benchmark flow: its first line records when the body started."""

from __future__ import annotations

import time

from headrace import flow


@flow
def touch(t0: float, out: str, sleep: float = 0.0) -> None:
    with open(out, "a") as handle:
        handle.write(f"{t0} {time.time()}\n")
    if sleep:
        time.sleep(sleep)
