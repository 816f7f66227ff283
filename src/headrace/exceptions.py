"""Every error headrace raises, under one root.

::

    HeadraceError
    ├── ConfigurationError            a setting has a bad value
    ├── FlowDefinitionError           a function cannot become a flow
    ├── ParameterValidationError      parameters do not fit a flow's signature
    ├── InvalidDeployment             a deployment's own definition is wrong
    │   └── InvalidProjectFile        a project file (headrace.toml) is malformed
    ├── EntrypointError               an entrypoint cannot give a flow
    │   ├── InvalidEntrypoint         the string is not PATH:FUNC or module:func
    │   ├── EntrypointFileNotFound    the file does not exist
    │   ├── EntrypointModuleNotFound  the module cannot be imported
    │   ├── EntrypointAttributeNotFound   the file has no such name
    │   ├── NotAFlow                  the name is not a flow
    │   └── EntrypointScriptError     the file raised while it was imported
    ├── ObjectNotFound                no flow run / deployment with that id
    ├── InvalidStateTransition        a run may not move to that state
    ├── FlowRunCancelled              a subflow's run was cancelled: its call raises this
    ├── IdempotencyKeyReused          a known idempotency key with other parameters
    ├── StoreError                    the database failed (driver error chained)
    │   ├── StoreUnavailable          the database cannot be reached
    │   │   └── StoreTimeout          the database did not answer in time
    │   └── StoreFull                 the database has no space left
    ├── SubmissionError               a runner webserver refused or did not answer
    │   └── RunnerUnreachable         no runner webserver answers
    └── NotOverHttp                   the HTTP API (HEADRACE_API_URL) has no route for it

Each class's docstring is its default message. HTTP status codes are decided
only in ``headrace.runner.server``.
"""

from __future__ import annotations

from typing import Any


class HeadraceError(Exception):
    """headrace failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self)


class ConfigurationError(HeadraceError):
    """A setting has a bad value."""


class FlowDefinitionError(HeadraceError):
    """This function cannot become a flow."""


class ParameterValidationError(HeadraceError):
    """The parameters do not fit the flow's signature."""

    def __init__(self, errors: list[dict[str, Any]], message: str | None = None) -> None:
        self.errors = errors
        if message is None:
            details = "; ".join(f"{e['parameter']}: {e['message']}" for e in errors)
            message = f"Invalid parameters: {details}"
        super().__init__(message)

    @property
    def parameter_names(self) -> list[str]:
        return [str(e["parameter"]) for e in self.errors]


class InvalidDeployment(HeadraceError):
    """The deployment's definition is invalid."""


class InvalidProjectFile(InvalidDeployment):
    """The project file is invalid."""


class EntrypointError(HeadraceError):
    """The entrypoint cannot be loaded as a flow."""


class InvalidEntrypoint(EntrypointError):
    """An entrypoint looks like `path/to/file.py:function` or `package.module:function`."""


class EntrypointFileNotFound(EntrypointError):
    """The entrypoint's file does not exist."""


class EntrypointModuleNotFound(EntrypointError):
    """The entrypoint's module cannot be imported."""


class EntrypointAttributeNotFound(EntrypointError):
    """The entrypoint's file has no attribute of that name."""


class NotAFlow(EntrypointError):
    """The entrypoint names an object that is not a flow; decorate it with @flow."""


class EntrypointScriptError(EntrypointError):
    """The entrypoint's script raised an exception while it was imported."""

    traceback_text: str = ""


class ObjectNotFound(HeadraceError):
    """No object with that id exists."""


class InvalidStateTransition(HeadraceError):
    """A flow run may not move to that state."""


class FlowRunCancelled(HeadraceError):
    """The flow run was cancelled.

    Calling a flow inside a run raises it when that child run is cancelled on its
    own (``headrace runs cancel CHILD``): the caller may catch it and go on, or fail.
    It is also what interrupts the child's body, where the cancel finds it.
    """

    def __init__(self, message: str | None = None, flow_run_id: str | None = None) -> None:
        super().__init__(message)
        self.flow_run_id = flow_run_id
        """The cancelled run's id."""


class IdempotencyKeyReused(HeadraceError):
    """This idempotency key was already used with different parameters."""


class StoreError(HeadraceError):
    """The database operation failed."""


class StoreUnavailable(StoreError):
    """The database cannot be reached."""


class StoreTimeout(StoreUnavailable):
    """The database did not answer in time."""


class StoreFull(StoreError):
    """The database is full (no space left)."""


class SubmissionError(HeadraceError):
    """The runner webserver refused the submission."""


class RunnerUnreachable(SubmissionError):
    """No runner webserver answers. Start one with `headrace serve ...` or
    `Runner(webserver=True)`, or set HEADRACE_RUNNER_SERVER_ENABLE=true."""


class NotOverHttp(HeadraceError):
    """The runner's HTTP API cannot do this."""

    @classmethod
    def refusing(cls, what: str) -> NotOverHttp:
        return cls(
            f"The headrace HTTP API has no route for {what}: run this command where the "
            "database is reachable (without HEADRACE_API_URL)"
        )
