"""A minimal service on the kit, run as a real process by tests (graceful shutdown, trace export)."""

import asyncio
import sys

from fastapi import FastAPI

from eolake_kit import ServiceSettings, install_kit, serve


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/slow")
    async def slow(seconds: float = 1.0) -> dict:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    return install_kit(app, ServiceSettings())


if __name__ == "__main__":
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    serve("kitapp:create_app", ServiceSettings())
