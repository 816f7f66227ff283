"""The project file's model: what it serves, and errors that name the deployment and key."""

from __future__ import annotations

from typing import Any

import pytest

from headrace.exceptions import InvalidProjectFile
from headrace.projects import parse_project
from headrace.schedules import CronSchedule, IntervalSchedule


def deployment(**keys: Any) -> dict[str, Any]:
    return {"name": "nightly", "entrypoint": "flows.py:etl", **keys}


def test_every_option_becomes_a_deployment_keyword() -> None:
    project = parse_project(
        {
            "runner": {"limit": 3, "host": "0.0.0.0", "port": 9000},
            "deployments": [
                deployment(
                    cron="0 2 * * *",
                    timezone="Europe/Berlin",
                    schedules=[{"interval": 600, "parameters": {"day": "x"}, "active": False}],
                    parameters={"limit": 10},
                    tags=["etl"],
                    paused=True,
                    concurrency_limit=1,
                    on_shutdown="requeue",
                    retries=2,
                    notify=["https://hooks.example.com/a", {"url": "http://b", "secret": "s"}],
                )
            ],
        },
        "headrace.toml",
    )
    assert project.runner.model_dump() == {"limit": 3, "host": "0.0.0.0", "port": 9000}
    [only] = project.deployments
    options = only.options()
    cron, interval = options["schedules"] or []
    assert cron.schedule == CronSchedule(cron="0 2 * * *", timezone="Europe/Berlin")
    assert isinstance(interval.schedule, IntervalSchedule)
    assert (interval.parameters, interval.active) == ({"day": "x"}, False)
    assert options["parameters"] == {"limit": 10}
    assert (options["paused"], options["concurrency_limit"], options["on_shutdown"]) == (
        True,
        1,
        "requeue",
    )
    assert only.retries == 2
    assert len(options["notify"] or []) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"deployments": [deployment(cron="* * *")]},
            "headrace.toml: deployment \"nightly\": cron: invalid cron expression '* * *'",
        ),
        (
            {"deployments": [deployment(crn="0 * * * *")]},
            'headrace.toml: deployment "nightly": crn: Extra inputs are not permitted',
        ),
        (
            {"deployments": [deployment(schedules=[{"timezone": "UTC"}])]},
            'deployment "nightly": schedules.0: a schedule needs one of cron, interval, rrule',
        ),
        (
            {"deployments": [deployment(cron="0 * * * *", interval=60)]},
            "give at most one of cron, interval, rrule",
        ),
        (
            {"deployments": [{"entrypoint": "etl.py:etl", "concurrency_limit": 0}]},
            'deployment "etl.py:etl": concurrency_limit: Input should be greater than or equal',
        ),
        ({"deployments": [{"name": "x"}]}, 'deployment "x": entrypoint: Field required'),
        (
            {"deployments": [deployment(notify=["ftp://x"])]},
            'deployment "nightly": notify: notify target 1: url: ',
        ),
        ({"deployments": [deployment(), deployment()]}, '"nightly" is listed twice'),
        ({"runner": {"port": 70000}, "deployments": [deployment()]}, "runner.port: Input"),
        ({"deployment": [deployment()]}, "headrace.toml: no deployments"),
    ],
)
def test_errors_name_the_deployment_and_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidProjectFile) as caught:
        parse_project(data, "headrace.toml")
    assert message in str(caught.value)
