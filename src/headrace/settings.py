"""Settings: one typed object, read from ``HEADRACE_*`` environment variables at the edge.

Nothing reads ``os.environ`` at import time; callers build ``Settings()`` (or
``Settings(...)`` in tests) and pass it down.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from headrace.exceptions import ConfigurationError

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
LogFormat = Literal["text", "json"]

ENV_PREFIX = "HEADRACE_"

LATE_RUNS_AFTER_SECONDS = 60.0
"""A healthy runner starts a due run within a poll (10 s by default; at once when it is
woken), and its webserver counts it unresponsive after two missed polls: a minute past
due means the run is not being started (no runner alive, or all its slots busy), while
the ordinary wait for a poll never makes a run look late."""

RUN_LOG_LIMIT_BYTES = 10 * 1024 * 1024
"""10 MiB: some 100,000 ordinary lines, more than anyone reads of one run, while a loop
printing at full speed writes hundreds of MB a minute; a database that holds a year of
runs must not grow by one run's mistake."""
LOG_LINE_LIMIT_CHARS = 16384
"""Four screens of text: a longer line is data (a dumped payload), not something to read."""
RETENTION_DAYS = 30.0
"""A month: what people look back over (last week's failures, last month's report), while
a run a minute stays some 43,000 runs on disk instead of half a million a year."""
MAX_RETENTION_DAYS = 100_000.0
"""Some 270 years: past it a date cannot be computed; ``none`` keeps runs for ever."""
NO_RETENTION = frozenset({"", "none", "off", "never"})
"""Values of ``HEADRACE_RETENTION_DAYS`` that keep every run (as does 0 or less)."""


class Settings(BaseSettings):
    """Every knob headrace has; field ``x`` is the variable ``HEADRACE_X``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    home: Path = Field(default_factory=lambda: Path("~/.headrace").expanduser())
    database_url: str | None = None
    api_key: str | None = None
    api_url: str | None = None
    """A runner's webserver (``http://host:port``): ``get_client()`` and the CLI go through
    its HTTP API, sending ``api_key``, instead of opening the database."""
    database_timeout_seconds: float = Field(default=5, gt=0)
    """How long a request waits for the database before answering 503, and how soon a
    PostgreSQL connection that went silent (connecting, a statement, the network) errors."""

    log_format: LogFormat = "text"
    """``json``: one JSON object per line (``timestamp``, ``level``, ``logger``, ``message``,
    and a run line's ``flow_run_id``, ``flow_run_name``, ``deployment``, ``attempt``), for
    log collectors to index; ``text``: for people reading a console."""

    runner_server_enable: bool = False
    runner_server_host: str = "localhost"
    runner_server_port: int = Field(default=8080, ge=0, le=65535)
    runner_server_log_level: LogLevel = "error"
    runner_server_missed_polls_tolerance: int = Field(default=2, ge=1)
    runner_server_allow_unmanaged_flows: bool = False
    runner_server_access_log: bool = False
    """One log line per webserver request: method, route template, status, duration."""
    runner_server_allowed_hosts: str | None = None
    """Comma-separated ``Host`` names the webserver answers (``*``: any); unset, the
    default of its bind: loopback names on a loopback bind, any host otherwise."""
    runner_server_allowed_origins: str = ""
    """Comma-separated origins (``https://ops.example.com``) besides its own that may POST."""
    runner_server_connection_limit: int | None = Field(default=None, ge=1)
    """Connections the webserver holds at most (past it: 503); unset, what the open-file limit
    leaves after room for the runs' pipes."""
    runner_server_keep_alive_seconds: int = Field(default=5, ge=1)
    """An idle connection (before its first request or between two) is closed after this."""

    metrics_enabled: bool = True
    """Whether runners count into their ``GET /metrics`` (off: the route answers 404)."""

    runner_poll_frequency: float = Field(default=10, gt=0)
    runner_process_limit: int = Field(default=5, ge=1)
    runner_backlog_limit: int = Field(default=1000, ge=1)
    runner_shutdown_grace_seconds: float = Field(default=30, ge=0)
    runner_heartbeat_timeout_seconds: float = Field(default=90, gt=0)
    runner_lease_margin_seconds: float = Field(default=5, ge=0)
    """Runners on other hosts take a silent runner's runs this long after its heartbeat
    timeout: what their clocks may disagree by."""
    late_runs_after_seconds: float = Field(default=LATE_RUNS_AFTER_SECONDS, ge=0)
    """A SCHEDULED run overdue by more than this reads as ``Late``."""
    run_log_limit_bytes: int = Field(default=RUN_LOG_LIMIT_BYTES, ge=0)
    """An attempt's log lines stored at most (UTF-8 bytes); past it one line counts the rest."""
    log_line_limit_chars: int = Field(default=LOG_LINE_LIMIT_CHARS, ge=1)
    """A longer log line is stored once, cut to this, with a marker counting what was cut."""
    webhook_attempts: int = Field(default=5, ge=1)
    """Tries to deliver one webhook: a network error or a 5xx answer is tried again."""
    webhook_retry_seconds: float = Field(default=2, gt=0)
    """The wait before the second try; it doubles for each further one."""
    webhook_timeout_seconds: float = Field(default=10, gt=0)
    """How long one try waits for the receiver to answer."""
    result_storage: str | None = None
    """Where results larger than a run's row keeps are written whole: a directory, or an
    fsspec URL (``s3://bucket/results``; needs the ``results`` extra). Unset: ``home/results``."""
    retention_days: float | None = RETENTION_DAYS
    """Runners delete runs that ended longer ago than this, with their logs and states, in
    the background; None (0, a negative number or ``none``): runs are kept for ever."""
    runner_pin_cpu: bool = False
    """A serving process keeps its own threads on one CPU (its runs use them all). Off by
    default: every serving process would take the same CPU."""

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("api_url", mode="after")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if re.fullmatch(r"https?://[^/\s]+(/\S*)?", value) is None:
            raise ValueError(f"{value!r} is not an http:// or https:// URL (http://host:8080)")
        return value.rstrip("/")

    @field_validator("runner_server_log_level", "log_format", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("retention_days", mode="before")
    @classmethod
    def _no_retention(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and value.strip().lower() in NO_RETENTION):
            return None
        return value

    @field_validator("retention_days", mode="after")
    @classmethod
    def _positive_retention(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value <= MAX_RETENTION_DAYS):
            raise ValueError(
                f"must be a number of days up to {MAX_RETENTION_DAYS:,.0f}, or 0 or none "
                "(keep every run)"
            )
        return value if value is not None and value > 0 else None

    @property
    def retention(self) -> timedelta | None:
        """How long an ended run is kept; None: for ever."""
        return None if self.retention_days is None else timedelta(days=self.retention_days)

    @property
    def resolved_result_storage(self) -> str:
        """Where large results go, defaulting to a directory under ``home``."""
        return self.result_storage or str(self.home / "results")

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'headrace.db'}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, turning a bad value into one clear error."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {error['msg']}")
        raise ConfigurationError("Invalid settings: " + "; ".join(problems)) from exc
