"""Where the CLI writes: results on stdout, notes and errors on stderr, JSON for scripts."""

from __future__ import annotations

import json
import os

import typer
from rich.console import Console

PIPE_WIDTH = 1000


def stdout() -> Console:
    """The console for results; piped output keeps whole table rows instead of 80 columns."""
    console = Console(highlight=False, markup=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def stderr() -> Console:
    """The console for notes and errors, so that stdout stays the command's result."""
    return Console(stderr=True, highlight=False, markup=False, emoji=False)


def echo_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
