"""A serving runner in a process of its own: ``python PATH/serving_runner.py URL HOME MODE PORT``.

MODE ``basic`` serves flows of ``tests.flows.basic`` (the repository must be on
``PYTHONPATH``), one run at a time, with its webserver on PORT. MODE ``local``
serves a flow defined in this file only: started from another directory, it
cannot load the runs of ``tests.flows.basic``. Either keeps the default name.
Prints ``ready NAME`` before it starts.
"""

from __future__ import annotations

import asyncio
import sys

from headrace import flow
from headrace.runner import Runner
from headrace.settings import Settings


@flow
def local_touch() -> str:
    return "local"


async def main(database_url: str, home: str, mode: str, port: int) -> None:
    settings = Settings(
        home=home,
        database_url=database_url,
        runner_server_host="127.0.0.1",
        runner_server_port=port,
    )
    runner = Runner(settings=settings, query_seconds=0.2, limit=1, webserver=mode == "basic")
    if mode == "basic":
        from tests.flows import basic

        await runner.add_flow(basic.add, "add")
        await runner.add_flow(basic.sleepy, "sleepy")
    else:
        await runner.add_flow(local_touch, "local")
    print("ready", runner.name, flush=True)
    await runner.start()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
