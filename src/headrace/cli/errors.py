"""How a command ends: its exit codes, and user errors as one red line instead of a traceback.

User errors (an unknown deployment, a bad parameter or setting, an unreachable
database: any ``HeadraceError``) exit 1; malformed options and project files exit 2. A script
that raises while it is imported is followed by the frames that say where.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NoReturn

import typer
from rich.text import Text

from headrace.cli.consoles import stderr
from headrace.exceptions import (
    EntrypointScriptError,
    HeadraceError,
    InvalidProjectFile,
    NotOverHttp,
    ParameterValidationError,
)

EXIT_FAILED = 1
"""A user error, or a watched run that did not complete."""
EXIT_USAGE = 2
EXIT_TIMEOUT = 124
"""``run --watch --timeout`` ran out (as GNU ``timeout`` does); the run carries on."""
EXIT_INTERRUPTED = 130
"""Ctrl-C while watching; the run carries on."""

STRING_PARAM_HINT = " (--param values are read as JSON: quote text, as in -p 'name=\"123\"')"


class UsageProblem(ValueError):
    """An option's value is malformed, or options do not fit together (the CLI exits 2)."""


def fail(message: object, code: int = EXIT_FAILED, *, detail: str = "") -> NoReturn:
    """Print one red line on stderr (then ``detail`` as it is) and exit with ``code``."""
    line = " ".join(str(message).split()) or "failed"
    text = Text.assemble(("Error: ", "bold red"), (line, "red"))
    if detail:
        text.append(f"\n{detail}")
    stderr().print(text, soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn user errors into one line and an exit code instead of a traceback."""
    try:
        yield
    except (UsageProblem, InvalidProjectFile, NotOverHttp) as exc:
        fail(exc, EXIT_USAGE)
    except ParameterValidationError as exc:
        wanted_text = any("of type 'string'" in str(e.get("message")) for e in exc.errors)
        fail(f"{exc}{STRING_PARAM_HINT if wanted_text else ''}", EXIT_FAILED)
    except EntrypointScriptError as exc:  # the line, then where in the script it was raised
        line, _, frames = str(exc).partition("\n")
        fail(line, EXIT_FAILED, detail=frames)
    except HeadraceError as exc:
        fail(exc, EXIT_FAILED)
