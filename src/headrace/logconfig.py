"""Console logging for processes that serve flows: headrace's lines, its runs' lines.

Two formats (``HEADRACE_LOG_FORMAT``): ``text`` for a person at a console, and
``json``, one object per line, for a log collector to index and search: a run's
line carries the run's id, name, deployment and attempt as fields of their own,
so "everything run 5d1c... logged" is a query, not a grep.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

RUN_LINE = "run_line"
"""The ``extra`` key holding a run's own line, without the run name the text format adds."""

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
    RUN_LINE,
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``timestamp`` (UTC), ``level``, ``logger``, ``message``,
    the record's ``extra`` fields, and ``exception`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = record.__dict__.get(RUN_LINE)
        raised = None
        if isinstance(line, str):
            line, raised = split_traceback(line)
        entry: dict[str, object] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage() if line is None else line,
        }
        if raised is not None:
            entry["exception"] = raised
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


TRACEBACK_START = "Traceback (most recent call last):"


def split_traceback(text: str) -> tuple[str, str | None]:
    """A run's line as its words and the traceback in it (None if none): a run that raised,
    or logged with ``logger.exception``, wrote both as one line. With no words before it,
    the traceback's last line (the exception) is the words."""
    at = text.find(TRACEBACK_START)
    if at < 0 or (at > 0 and text[at - 1] != "\n"):
        return text, None
    words, raised = text[:at].rstrip(), text[at:].rstrip("\n")
    return words or raised.rsplit("\n", 1)[-1].strip(), raised


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


def formatter_for(log_format: str) -> logging.Formatter:
    """The formatter of ``HEADRACE_LOG_FORMAT``: ``json`` or ``text``."""
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter("%(asctime)s %(levelname)-8s %(message)s", datefmt="%H:%M:%S")


def configure_logging(level: str = "info", log_format: str = "text") -> None:
    """headrace's own lines (and its runs' lines) at ``level``; other libraries' warnings.

    Does nothing but set headrace's level when the application has configured
    logging itself (it may use ``JsonFormatter`` in its own configuration).
    """
    if not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter_for(log_format))
        logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("headrace").setLevel(level.upper())
