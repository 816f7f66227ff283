"""A runner in a process of its own, for tests that kill it: ``python -m ... URL HOME [LIMIT]``."""

from __future__ import annotations

import asyncio
import sys

from headrace.runner import Runner
from headrace.settings import Settings
from tests.flows import basic, subflows, tasks


async def main(database_url: str, home: str, limit: int = 1) -> None:
    settings = Settings(home=home, database_url=database_url)
    runner = Runner(name="doomed", settings=settings, query_seconds=0.2, limit=limit)
    await runner.add_flow(basic.touch, "touch")
    await runner.add_flow(basic.with_grandchild, "grandchild")
    await runner.add_flow(subflows.parent_of_a_long_child, "long-child")
    await runner.add_flow(subflows.parent_of_a_child_awaiting_a_retry, "retrying-child")
    await runner.add_flow(tasks.waits_on_a_sleeping_task, "sleeping-task")
    print("ready", flush=True)
    await runner.start()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:4])))
