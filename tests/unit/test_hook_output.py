"""What a hook prints in a runner's thread is kept as lines; other threads' output passes on."""

from __future__ import annotations

import logging
import sys
import threading

import pytest

from headrace.runner.hook_output import lines_of, printed_lines


def test_a_hook_threads_prints_are_kept_and_the_rest_pass_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    kept: list[tuple[int, str]] = []
    inside, leave = threading.Event(), threading.Event()

    def hook() -> None:
        with printed_lines(kept):
            print("from the hook")
            sys.stderr.write("half a ")
            inside.set()
            leave.wait(5)
            sys.stderr.write("line\nlast")

    thread = threading.Thread(target=hook)
    thread.start()
    assert inside.wait(5)
    print("from the runner")
    leave.set()
    thread.join(5)
    assert kept == [
        (logging.INFO, "from the hook"),
        (logging.ERROR, "half a line"),
        (logging.ERROR, "last"),
    ]
    assert capsys.readouterr().out == "from the runner\n"
    assert type(sys.stdout).__name__ != "_PerThread"


def test_lines_keep_the_order_they_were_finished_in() -> None:
    chunks = [(20, "a"), (40, "b\n"), (20, "c\r\n"), (20, "\n")]
    assert lines_of(chunks) == [(40, "b"), (20, "ac"), (20, "")]
