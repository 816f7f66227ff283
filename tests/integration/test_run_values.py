"""What runs return and print reaches the store as JSON and text every store keeps, alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from headrace.client import get_client
from headrace.flow_runs import RESULT_SIZE_LIMIT
from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import values
from tests.helpers import make_runner, running, wait_for_state
from tests.integration.server_app import client as asgi_client

pytestmark = pytest.mark.timeout(90)


async def test_results_are_stored_in_their_json_form(settings: Settings) -> None:
    runner = make_runner(settings)
    flows = [values.typed_values, values.a_datetime, values.a_model]
    deployments = [await runner.add_flow(f) for f in flows]
    async with running(runner), get_client(settings) as client:
        runs = [await client.create_flow_run_from_deployment(d) for d in deployments]
        typed, when, model = [await wait_for_state(client.store, run.id) for run in runs]
    assert typed.state.type == StateType.COMPLETED, typed.state
    assert typed.result == {
        "when": "2026-01-31T12:30:00Z",
        "amount": "1.10",
        "id": "12345678-1234-5678-1234-567812345678",
        "point": {"x": 1, "y": 2},
        "reading": {"sensor": "t1", "value": 20.5},
        "colour": "red",
        "pair": [1, 2],
    }
    assert (when.result, model.result) == ("2026-01-31T00:00:00Z", {"x": 3, "y": 4})
    assert not typed.result_truncated and typed.state.message is None


async def test_a_result_that_cannot_be_encoded_is_null_and_says_why(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(values.nested_object)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment)
        done = await wait_for_state(client.store, run.id)
    assert done.state.type == StateType.COMPLETED, done.state
    assert done.result is None and not done.result_truncated
    assert "The result (dict) is not JSON-encodable" in (done.state.message or "")
    assert "object" in (done.state.message or "")


async def test_a_result_too_large_for_a_row_is_kept_whole_in_the_result_store(
    settings: Settings,
) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(values.sized_result)
    async with running(runner), get_client(settings) as client:
        large = await client.create_flow_run_from_deployment(deployment, {"size": 100_000})
        fits = await client.create_flow_run_from_deployment(
            deployment,
            {"size": RESULT_SIZE_LIMIT - 2},  # the JSON string's quotes: 2 bytes
        )
        done = await wait_for_state(client.store, large.id)
        kept = await wait_for_state(client.store, fits.id)
        whole = await client.read_flow_run_result(large.id)
        app = await build_server(runner)
        async with asgi_client(app) as http:
            as_json = (await http.get(f"/flow_runs/{large.id}")).json()
            result = await http.get(f"/flow_runs/{large.id}/result")
            small = await http.get(f"/flow_runs/{fits.id}/result")
    assert done.state.type == StateType.COMPLETED, done.state
    assert done.result is None and not done.result_truncated and done.state.message is None
    assert done.result_ref == str(settings.home / "results" / f"{large.id}.json")
    assert (as_json["result"], as_json["result_ref"]) == (None, done.result_ref)
    assert result.status_code == 200 and result.json() == "x" * 100_000 == whole
    assert small.json() == kept.result == "x" * (RESULT_SIZE_LIMIT - 2)
    assert kept.result_ref is None and not kept.result_truncated


async def test_a_result_too_large_for_a_row_and_no_store_is_marked_not_cut(
    settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    settings = settings.model_copy(update={"result_storage": str(tmp_path / "a-file" / "r")})
    runner = make_runner(settings)
    deployment = await runner.add_flow(values.sized_result)
    async with running(runner), get_client(settings) as client:
        large = await client.create_flow_run_from_deployment(deployment, {"size": 100_000})
        done = await wait_for_state(client.store, large.id)
        app = await build_server(runner)
        async with asgi_client(app) as http:
            as_json = (await http.get(f"/flow_runs/{large.id}")).json()
            result = await http.get(f"/flow_runs/{large.id}/result")
    assert done.state.type == StateType.COMPLETED, done.state
    assert done.result is None and done.result_truncated and done.result_ref is None
    assert "100,002 bytes" in (done.state.message or ""), done.state.message
    assert "a-file" in (done.state.message or ""), done.state.message
    assert (as_json["result"], as_json["result_truncated"]) == (None, True)
    assert result.status_code == 409 and "100,002 bytes" in result.json()["message"]


async def test_nul_and_unpaired_surrogates_are_repaired_in_logs_results_and_parameters(
    settings: Settings,
) -> None:
    runner = make_runner(settings)
    # A deployment's own parameters are not a request: they are repaired, not refused.
    deployment = await runner.add_flow(
        values.nul_and_surrogate, "dep\x00name", parameters={"value": "p\x00q\ud800r"}
    )
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment)
        done = await wait_for_state(client.store, run.id)
        messages = [line.message for line in await client.read_logs(run.id)]
        stored_deployment = await client.read_deployment(deployment)
    assert done.state.type == StateType.COMPLETED, done.state
    assert done.parameters == {"value": "p\ufffdq\ufffdr"}
    assert done.result == {"value": "p\ufffdq\ufffdr", "made": "a\ufffdb\ufffdc", "a\ufffdkey": 1}
    assert any(m.endswith("logged a\ufffdb \ufffd end") for m in messages), messages
    assert "printed a\ufffdb end" in messages
    assert stored_deployment.name == "dep\ufffdname"


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_nul_printed_by_one_run_costs_no_other_run_a_line(
    settings: Settings, tmp_path: Path
) -> None:
    runner = make_runner(settings)
    talker = await runner.add_flow(values.steady_talker)
    printer = await runner.add_flow(values.nul_printer)
    marker = str(tmp_path / "talking")
    async with running(runner), get_client(settings) as client:
        steady = await client.create_flow_run_from_deployment(talker, {"marker": marker})
        bad = await client.create_flow_run_from_deployment(printer, {"marker": marker})
        steady_done = await wait_for_state(client.store, steady.id)
        bad_done = await wait_for_state(client.store, bad.id)
        steady_lines = [line.message for line in await client.read_logs(steady.id)]
        bad_lines = [line.message for line in await client.read_logs(bad.id)]
    assert steady_done.state.type == bad_done.state.type == StateType.COMPLETED
    assert steady_lines == [f"steady line {n}" for n in range(40)]
    assert bad_lines == ["bad \ufffd line"]
