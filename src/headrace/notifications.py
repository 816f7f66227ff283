"""Webhooks of a deployment: where to POST a run that reached a final state, and how it is signed.

A ``Notify`` is one target: a URL, the final states that fire it (FAILED and
CRASHED unless told), and an optional secret. With a secret, each delivery
carries ``X-Headrace-Timestamp`` and ``X-Headrace-Signature: sha256=<hex>``,
the HMAC-SHA256 of ``<timestamp>.<raw body>``: a receiver checks both, and
refuses an old timestamp, so a recorded delivery cannot be replayed. The
secret is stored with the deployment but never shown: dumps give ``**********``
unless asked for the secret (``REVEAL_SECRETS``, used by the store alone).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    ValidationError,
    field_serializer,
    field_validator,
)

from headrace.states import TERMINAL_STATES, StateType

DEFAULT_STATES = (StateType.FAILED, StateType.CRASHED)
SIGNATURE_HEADER = "X-Headrace-Signature"
TIMESTAMP_HEADER = "X-Headrace-Timestamp"
EVENT_HEADER = "X-Headrace-Event"
HIDDEN = "**********"
REVEAL_SECRETS = {"reveal_secrets": True}
"""The serialization context that keeps secrets: the store's, when it writes a deployment."""


class Notify(BaseModel):
    """POST a run to ``url`` when a run of the deployment ends in one of ``states``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(min_length=1)
    states: tuple[StateType, ...] = DEFAULT_STATES
    secret: str | None = Field(default=None, min_length=1, repr=False)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        AnyHttpUrl(url)  # raises for anything but an http(s) URL with a host
        return url

    @field_validator("states", mode="before")
    @classmethod
    def _final_states(cls, states: Any) -> Any:
        if isinstance(states, str):
            states = [states]
        if not isinstance(states, list | tuple | set | frozenset) or not states:
            raise ValueError("must be a non-empty list of final states")
        names = [s.upper() if isinstance(s, str) else s for s in states]
        for name in names:
            if name not in {t.value for t in TERMINAL_STATES}:
                finals = ", ".join(sorted(t.value for t in TERMINAL_STATES))
                raise ValueError(f"{name!r} is not a final state (one of {finals})")
        return tuple(dict.fromkeys(names))

    @field_serializer("secret")
    def _hidden(self, secret: str | None, info: SerializationInfo) -> str | None:
        context = info.context or {}
        return secret if secret is None or context.get("reveal_secrets") else HIDDEN

    def fires_on(self, state: StateType) -> bool:
        return state in self.states


class Delivery(BaseModel):
    """One attempt to deliver a run's webhook, as recorded: what the receiver answered
    (``status_code``) or why nobody did (``error``)."""

    model_config = ConfigDict(frozen=True)

    id: int = 0
    flow_run_id: UUID
    url: str
    event: str
    attempt: int
    status_code: int | None = None
    error: str | None = None
    delivered: bool = False
    timestamp: datetime


def event_name(state: StateType) -> str:
    """The event a final state fires: ``flow_run.failed`` and so on."""
    return f"flow_run.{state.value.lower()}"


def notify_targets(value: Iterable[Notify | str | dict[str, Any]] | None) -> list[Notify]:
    """The targets a ``notify=`` option gives: a URL alone takes the defaults.

    Raises ``ValueError`` naming the target (by position) and the bad key.
    """
    if value is None:
        return []
    if isinstance(value, str | Notify | dict):
        value = [value]
    targets = []
    for number, item in enumerate(value, start=1):
        try:
            targets.append(_target(item))
        except ValidationError as exc:
            raise ValueError(f"notify target {number}: {_describe(exc)}") from None
    return targets


def _target(item: object) -> Notify:
    if isinstance(item, Notify):
        return item
    if isinstance(item, str):
        return Notify(url=item)
    if isinstance(item, dict):
        return Notify.model_validate(item)
    raise ValueError(f"a URL, a dict or a Notify, got {type(item).__name__}")


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'value'}: "
        + str(error["msg"]).removeprefix("Value error, ")
        for error in exc.errors(include_url=False)
    )


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Headrace-Signature`` value of ``body`` sent at ``timestamp`` (Unix seconds)."""
    message = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(secret: str | None, timestamp: str, body: bytes) -> dict[str, str]:
    """The signature headers of a delivery (none without a secret)."""
    if secret is None:
        return {}
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}
