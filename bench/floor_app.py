"""The route floor's server: one route answering a constant, on the runner's web stack.

    python bench/floor_app.py PORT

FastAPI on uvicorn as the runner serves it: uvloop when installed (as
``headrace serve`` runs its loop), uvicorn's default HTTP implementation, no
lifespan, no access log. What the runner adds on top of this is headrace's.
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn
from fastapi import FastAPI
from starlette.responses import Response

OK = b'{"message":"OK"}'


def build_app() -> FastAPI:
    app = FastAPI()

    async def constant() -> Response:
        return Response(OK, media_type="application/json")

    app.add_api_route("/", constant, methods=["GET"])
    return app


def main() -> None:
    config = uvicorn.Config(
        build_app(),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    try:
        import uvloop
    except ImportError:
        asyncio.run(server.serve())
        return
    uvloop.run(server.serve())


if __name__ == "__main__":
    main()
