"""Delivering a deployment's webhooks: a POST of the run that ended, in the background.

The runner that wrote a run's final state delivers its webhooks, after that
write, in tasks of its own: a receiver that is slow or down never delays a run
or a claim. Each try is recorded (``notification_deliveries``); a network
error or a 5xx answer is tried again after a delay that doubles, up to
``webhook_attempts`` tries. A runner that stops waits a little for deliveries
in flight, then records each one it gives up on: a delivery is never lost
without a row saying so, unless the runner is killed outright.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import uuid4

import httpx
import pydantic_core

from headrace._version import __version__
from headrace.exceptions import StoreError
from headrace.flow_runs import FlowRun
from headrace.notifications import EVENT_HEADER, Delivery, Notify, event_name, signed_headers
from headrace.settings import Settings
from headrace.states import utcnow
from headrace.store import AsyncStore

logger = logging.getLogger(__name__)

STOP_WAIT_SECONDS = 5.0
"""How long a stopping runner lets deliveries in flight finish before it gives them up."""
GAVE_UP = "not delivered: the runner stopped before it could be"


@dataclass(frozen=True)
class WebhookPolicy:
    attempts: int = 5
    retry_seconds: float = 2.0
    timeout_seconds: float = 10.0


def webhook_policy(settings: Settings) -> WebhookPolicy:
    return WebhookPolicy(
        attempts=settings.webhook_attempts,
        retry_seconds=settings.webhook_retry_seconds,
        timeout_seconds=settings.webhook_timeout_seconds,
    )


@dataclass
class _Try:
    """Where one delivery stands: its target, event and body, and the tries made."""

    target: Notify
    run: FlowRun
    event: str
    body: bytes
    delivery_id: str
    attempt: int = 0


class Webhooks:
    """Delivers webhooks in background tasks; ``close()`` waits for them, briefly."""

    def __init__(self, store: AsyncStore, policy: WebhookPolicy) -> None:
        self._store = store
        self._policy = policy
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def deliver(self, run: FlowRun, targets: Sequence[Notify]) -> None:
        """POST ``run`` to each target that its final state fires (returns at once)."""
        chosen = [t for t in targets if t.fires_on(run.state.type)]
        if chosen:
            task = asyncio.get_running_loop().create_task(self._deliver_all(run, chosen))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def _deliver_all(self, run: FlowRun, targets: list[Notify]) -> None:
        body = await self._payload(run)
        event = event_name(run.state.type)
        tries = [_Try(target, run, event, body, str(uuid4())) for target in targets]
        await asyncio.gather(*(self._deliver(one) for one in tries))

    async def _payload(self, run: FlowRun) -> bytes:
        """The run as ``GET /flow_runs/{id}`` returns it, plus the event's name."""
        data = run.model_dump(mode="json")
        try:
            history = await self._store.read_state_history(run.id)
            data["state_history"] = [state.model_dump(mode="json") for state in history]
        except StoreError:
            data["state_history"] = []
        data["event"] = event_name(run.state.type)
        return pydantic_core.to_json(data, inf_nan_mode="null")

    async def _deliver(self, one: _Try) -> None:
        try:
            while one.attempt < self._policy.attempts:
                one.attempt += 1
                status, error = await self._post(one)
                delivered = status is not None and 200 <= status < 300
                await self._record(one, status, error, delivered)
                if delivered or not _worth_retrying(status):
                    return
                if one.attempt < self._policy.attempts:
                    await asyncio.sleep(self._policy.retry_seconds * 2 ** (one.attempt - 1))
            logger.warning("Gave up delivering %s of %s to %s", one.event, one.run.name, _url(one))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._record(one, None, GAVE_UP, False, attempt=one.attempt + 1)
            raise

    async def _post(self, one: _Try) -> tuple[int | None, str | None]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"headrace/{__version__}",
            EVENT_HEADER: one.event,
            "X-Headrace-Delivery": one.delivery_id,
            **signed_headers(one.target.secret, str(int(time.time())), one.body),
        }
        try:
            response = await self._http().post(one.target.url, content=one.body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return response.status_code, None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            timeout = httpx.Timeout(self._policy.timeout_seconds)
            self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        return self._client

    async def _record(
        self,
        one: _Try,
        status: int | None,
        error: str | None,
        delivered: bool,
        attempt: int | None = None,
    ) -> None:
        delivery = Delivery(
            flow_run_id=one.run.id,
            url=one.target.url,
            event=one.event,
            attempt=one.attempt if attempt is None else attempt,
            status_code=status,
            error=error,
            delivered=delivered,
            timestamp=utcnow(),
        )
        try:
            await self._store.record_delivery(delivery)
        except StoreError as exc:
            logger.warning("Could not record a webhook delivery of %s: %s", one.run.name, exc)

    async def close(self, wait_seconds: float = STOP_WAIT_SECONDS) -> None:
        """Let deliveries in flight finish for ``wait_seconds``, record the rest as given up."""
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=wait_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=wait_seconds)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None


def _worth_retrying(status: int | None) -> bool:
    return status is None or status >= 500 or status == 429


def _url(one: _Try) -> str:
    return one.target.url.split("?", 1)[0]
