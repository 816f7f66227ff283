"""Submitting runs to a runner's webserver over HTTP, and waiting for them.

``submit_to_runner`` posts to ``POST /flow/run`` of the runner at
``HEADRACE_RUNNER_SERVER_HOST``/``PORT`` (with ``HEADRACE_API_KEY`` when set),
retrying while the runner's backlog is full (429, after ``Retry-After``) for a
bounded time. ``wait_for_submitted_runs`` polls ``GET /flow_runs/{id}`` until
the runs have ended, also bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, overload
from uuid import UUID

import httpx

from headrace.exceptions import (
    ParameterValidationError,
    RunnerUnreachable,
    SubmissionError,
)
from headrace.flow_runs import FlowRun
from headrace.flows import Flow
from headrace.parameters import jsonable_parameters
from headrace.settings import Settings, load_settings

REQUEST_TIMEOUT_SECONDS = 10.0
MAX_RETRY_SECONDS = 60.0
"""How long ``submit_to_runner`` keeps retrying a busy runner (429, 503) in total."""
DEFAULT_RETRY_AFTER_SECONDS = 1.0
WAIT_TIMEOUT_SECONDS = 3600.0
POLL_SECONDS = 1.0
RETRIED_STATUSES = frozenset({429, 503})
BIND_ALL = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}

_submitted: list[UUID] = []
_submitted_lock = threading.Lock()


@overload
def submit_to_runner(
    flow: Flow[Any, Any] | str,
    parameters: dict[str, Any] | None = None,
    retry_failed_submissions: bool = True,
    *,
    parent_task_run_id: UUID | None = None,
    settings: Settings | None = None,
    max_retry_seconds: float = MAX_RETRY_SECONDS,
    transport: httpx.BaseTransport | None = None,
) -> FlowRun: ...


@overload
def submit_to_runner(
    flow: Flow[Any, Any] | str,
    parameters: list[dict[str, Any]],
    retry_failed_submissions: bool = True,
    *,
    parent_task_run_id: UUID | None = None,
    settings: Settings | None = None,
    max_retry_seconds: float = MAX_RETRY_SECONDS,
    transport: httpx.BaseTransport | None = None,
) -> list[FlowRun]: ...


def submit_to_runner(
    flow: Flow[Any, Any] | str,
    parameters: dict[str, Any] | list[dict[str, Any]] | None = None,
    retry_failed_submissions: bool = True,
    *,
    parent_task_run_id: UUID | None = None,
    settings: Settings | None = None,
    max_retry_seconds: float = MAX_RETRY_SECONDS,
    transport: httpx.BaseTransport | None = None,
) -> FlowRun | list[FlowRun]:
    """Run ``flow`` on the local runner's webserver: one run per parameter dict.

    ``flow`` is a flow object, or an entrypoint string. Values are sent as
    pydantic's JSON mode encodes them (a model, a date, an enum, a UUID), so
    the run gets them back as the flow's types; NaN and infinities are refused.
    A list of parameter dicts gives a list of runs: every dict is checked
    (with a flow object, also against its signature) before any is sent, and
    an error names the bad dict (``Parameters #1: ...``). A full backlog (429)
    or an unavailable store (503) is retried after ``Retry-After`` for up to ``max_retry_seconds``
    unless ``retry_failed_submissions`` is false. Raises
    ``ParameterValidationError`` for invalid parameters, ``RunnerUnreachable``
    when no webserver answers, ``SubmissionError`` when it refuses.
    ``transport`` replaces the network (an ``httpx`` transport, for tests).
    """
    entrypoint = flow if isinstance(flow, str) else _entrypoint(flow)
    listed = isinstance(parameters, list)
    batch = _as_json(parameters if isinstance(parameters, list) else [parameters], listed=listed)
    if not isinstance(flow, str):
        _check_all(flow, batch, listed=listed)  # all or none are sent
    settings = settings or load_settings()
    budget = max_retry_seconds if retry_failed_submissions else 0.0
    runs: list[FlowRun] = []
    try:
        with _http_client(settings, transport) as http:
            for index, params in enumerate(batch):
                body = {
                    "entrypoint": entrypoint,
                    "parameters": params,
                    "parent_task_run_id": str(parent_task_run_id) if parent_task_run_id else None,
                }
                try:
                    response = _post_with_retries(http, "/flow/run", body, budget)
                except ParameterValidationError as exc:
                    raise _for_item(exc, index) if isinstance(parameters, list) else exc from None
                runs.append(FlowRun.model_validate(response.json()))
    finally:
        with _submitted_lock:  # runs created before a failure are waited for too
            _submitted.extend(run.id for run in runs)
    return runs if isinstance(parameters, list) else runs[0]


def wait_for_submitted_runs(
    flow_run_filter: Iterable[UUID | FlowRun] | UUID | FlowRun | None = None,
    timeout: float | None = WAIT_TIMEOUT_SECONDS,
    *,
    poll_seconds: float = POLL_SECONDS,
    settings: Settings | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[FlowRun]:
    """Wait until the given runs (by default: every run this process submitted) have ended.

    Returns them in their final states, in the order given. Raises
    ``TimeoutError`` naming the runs still going after ``timeout`` seconds
    (``None``: no bound).
    """
    ids = _ids(flow_run_filter)
    settings = settings or load_settings()
    with _http_client(settings, transport) as http:
        ended = _poll_until_ended(http, ids, timeout, poll_seconds)
    if flow_run_filter is None:
        _forget(ended)
    return [ended[i] for i in ids]


def _poll_until_ended(
    http: httpx.Client, ids: list[UUID], timeout: float | None, poll_seconds: float
) -> dict[UUID, FlowRun]:
    """Each run in its final state, by id; runs already ended are not read again."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ended: dict[UUID, FlowRun] = {}
    while True:
        ended.update(_ended_among(http, [i for i in ids if i not in ended]))
        if len(ended) == len(ids):
            return ended
        if deadline is not None and time.monotonic() >= deadline:
            going = [str(i) for i in ids if i not in ended]
            raise TimeoutError(f"Flow runs still not finished after {timeout}s: {going}")
        time.sleep(_pause(deadline, poll_seconds))


def _ended_among(http: httpx.Client, ids: list[UUID]) -> dict[UUID, FlowRun]:
    """The runs of ``ids`` that have ended, read one by one."""
    runs = {flow_run_id: _read_run(http, flow_run_id) for flow_run_id in ids}
    return {flow_run_id: run for flow_run_id, run in runs.items() if run.state.is_terminal}


def _pause(deadline: float | None, poll_seconds: float) -> float:
    """Until the next poll: ``poll_seconds``, or less when the deadline comes first."""
    if deadline is None:
        return max(0.0, poll_seconds)
    return max(0.0, min(poll_seconds, deadline - time.monotonic()))


def _forget(ended: dict[UUID, FlowRun]) -> None:
    """Stop counting ended runs as this process's: the next wait does not return them."""
    with _submitted_lock:
        _submitted[:] = [i for i in _submitted if i not in ended]


# -- helpers -------------------------------------------------------------------


def runner_url(settings: Settings) -> str:
    """The base URL of the local runner's webserver, from its host and port settings.

    A webserver listening on every address (``0.0.0.0``, ``::``) is reached on
    loopback: clients and the ``headrace serve`` banner name that address.
    """
    host = settings.runner_server_host.strip("[]")
    host = BIND_ALL.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.runner_server_port}"


def _http_client(settings: Settings, transport: httpx.BaseTransport | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    return httpx.Client(
        base_url=runner_url(settings),
        headers=headers,
        timeout=REQUEST_TIMEOUT_SECONDS,
        transport=transport,
    )


def _as_json(batch: Sequence[dict[str, Any] | None], *, listed: bool) -> list[dict[str, Any]]:
    """Each parameter dict as the JSON the webserver receives (models, dates, enums...)."""
    encoded = []
    for index, params in enumerate(batch):
        try:
            encoded.append(jsonable_parameters(params))
        except ParameterValidationError as exc:
            raise _for_item(exc, index) if listed else exc from None
    return encoded


def _check_all(flow: Flow[Any, Any], batch: list[dict[str, Any]], *, listed: bool) -> None:
    """Validate every parameter dict here first: a bad one must not leave the rest half sent."""
    for index, params in enumerate(batch):
        try:
            flow.validate_parameters(params)
        except ParameterValidationError as exc:
            raise _for_item(exc, index) if listed else exc from None


def _for_item(error: ParameterValidationError, index: int) -> ParameterValidationError:
    """The error of one dict of a list, saying which (0-based)."""
    return ParameterValidationError(error.errors, f"Parameters #{index}: {error}")


def _entrypoint(flow: Flow[Any, Any]) -> str:
    # Lazily: a submission by entrypoint string never needs it.
    from headrace.entrypoints import entrypoint_of

    if not isinstance(flow, Flow):
        raise TypeError(f"submit_to_runner needs a flow (decorated with @flow), got {flow!r}")
    return entrypoint_of(flow)


def _post_with_retries(
    http: httpx.Client, path: str, body: dict[str, Any], budget_seconds: float
) -> httpx.Response:
    deadline = time.monotonic() + budget_seconds
    while True:
        response = _send(http, "POST", path, json=body)
        if response.status_code not in RETRIED_STATUSES:
            return _checked(response)
        delay = _retry_after(response)
        if time.monotonic() + delay > deadline:
            return _checked(response)
        time.sleep(delay)


def _read_run(http: httpx.Client, flow_run_id: UUID) -> FlowRun:
    response = _checked(_send(http, "GET", f"/flow_runs/{flow_run_id}"))
    return FlowRun.model_validate(response.json())


def _send(http: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise RunnerUnreachable(
            f"No runner webserver answers at {http.base_url} ({type(exc).__name__}). "
            "Start one with `headrace serve PATH:FUNC` or `Runner(webserver=True)`, or set "
            "HEADRACE_RUNNER_SERVER_ENABLE=true; HEADRACE_RUNNER_SERVER_HOST/PORT say where "
            "it listens."
        ) from exc


def _checked(response: httpx.Response) -> httpx.Response:
    """The response if it succeeded; else the error it means."""
    if response.is_success:
        return response
    detail = _body(response)
    text = str(detail.get("message") or response.reason_phrase)
    if response.status_code == 400 and isinstance(detail.get("errors"), list):
        raise ParameterValidationError(detail["errors"], text)
    if response.status_code == 401:
        raise SubmissionError(
            "The runner webserver refused the request: set HEADRACE_API_KEY to its key"
        )
    raise SubmissionError(f"The runner webserver answered {response.status_code}: {text}")


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS


def _ids(flow_runs: Iterable[UUID | FlowRun] | UUID | FlowRun | None) -> list[UUID]:
    if flow_runs is None:
        with _submitted_lock:
            return list(dict.fromkeys(_submitted))
    if isinstance(flow_runs, UUID | FlowRun):
        flow_runs = [flow_runs]
    return list(dict.fromkeys(run.id if isinstance(run, FlowRun) else run for run in flow_runs))
