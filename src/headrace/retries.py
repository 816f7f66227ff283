"""Retry policies of flows and tasks: how long to wait before each retry, and whether to retry.

``retry_delay_seconds`` is a number (every retry waits that long), a list (one
delay per retry, the last one repeated) or a callable given the number of
retries and returning such a list (``exponential_backoff(backoff_factor)``, as
Prefect has it). ``retry_jitter_factor`` spreads each delay ``d`` uniformly over
``d * (1 - f)`` .. ``d * (1 + f)`` (its mean stays ``d``, never below zero), so
many runs that failed together do not all retry at the same instant.
``retry_condition_fn(exception) -> bool`` sees the exception of the failed
attempt and says whether a retry may help: it is called in the run's process,
where the exception is, and a callable that raises counts as "do not retry".
Pure: no I/O here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Union

from headrace.exceptions import FlowDefinitionError

RetryDelays = Union[float, Sequence[float], Callable[[int], Sequence[float]]]  # noqa: UP007
"""What ``retry_delay_seconds`` accepts."""
RetryCondition = Callable[[BaseException], bool]
"""``retry_condition_fn``: given the failed attempt's exception, whether to retry."""
MAX_DELAYS = 100
"""Delays a policy lists at most (its last one is repeated beyond)."""


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Delays that double with each retry: ``backoff_factor * 2 ** n`` for retry ``n`` (from 0).

    Pass it as ``retry_delay_seconds=exponential_backoff(10)`` (10, 20, 40 s, ...),
    with ``retry_jitter_factor`` to spread them.
    """
    if not _is_number(backoff_factor) or backoff_factor < 0:
        raise FlowDefinitionError(f"backoff_factor must be a number >= 0, got {backoff_factor!r}")

    def delays(retries: int) -> list[float]:
        return [float(backoff_factor) * 2.0**n for n in range(min(retries, MAX_DELAYS))]

    return delays


def resolve_delays(retries: int, delays: RetryDelays) -> list[float]:
    """The delays of ``retry_delay_seconds`` as a checked list (at least one entry)."""
    value: object = delays(retries) if callable(delays) else delays
    if _is_number(value):
        value = [value]
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise FlowDefinitionError(
            f"retry_delay_seconds must be a number, a list of numbers or a callable returning "
            f"one, got {value!r}"
        )
    checked = [_check_delay(item) for item in value][:MAX_DELAYS]
    return checked or [0.0]


def delay_list(delays: Sequence[float]) -> list[float] | None:
    """``delays`` as stored with a deployment and its runs: None when one delay says it all
    (``retry_delay_seconds`` holds it)."""
    return list(delays) if len(delays) > 1 else None


def delay_before(retry: int, delays: Sequence[float], jitter_factor: float | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (from 1), jittered when asked."""
    base = delays[min(retry, len(delays)) - 1] if delays else 0.0
    if not jitter_factor or base <= 0:
        return base
    return random.uniform(max(0.0, base * (1 - jitter_factor)), base * (1 + jitter_factor))


def check_jitter(factor: float | None) -> float | None:
    if factor is None:
        return None
    if not _is_number(factor) or factor < 0:
        raise FlowDefinitionError(f"retry_jitter_factor must be a number >= 0, got {factor!r}")
    return float(factor)


def check_condition(condition: RetryCondition | None) -> RetryCondition | None:
    if condition is not None and not callable(condition):
        raise FlowDefinitionError(
            f"retry_condition_fn must be a callable (exception) -> bool, got {condition!r}"
        )
    return condition


def should_retry(condition: RetryCondition | None, exc: BaseException) -> tuple[bool, str]:
    """Whether ``condition`` allows a retry after ``exc``; the note to log when it did not."""
    if condition is None:
        return True, ""
    try:
        allowed = bool(condition(exc))
    except Exception as error:
        return False, f"retry_condition_fn raised {type(error).__name__}: {error}; not retrying"
    return allowed, "" if allowed else "retry_condition_fn said not to retry"


def _check_delay(seconds: object) -> float:
    if not _is_number(seconds) or seconds < 0:  # type: ignore[operator]
        raise FlowDefinitionError(f"retry delays must be numbers >= 0, got {seconds!r}")
    return float(seconds)  # type: ignore[arg-type]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
