"""The events service: the outbox relay in the background; its description, probes and metrics over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager

from fastapi import FastAPI

from eolake_events.relay import Relay
from eolake_events.settings import EventsSettings
from eolake_events.topology import describe
from eolake_kit import install_kit


def create_app(settings: EventsSettings | None = None) -> FastAPI:
    settings = settings or EventsSettings()
    relay = Relay(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        tasks = [asyncio.create_task(relay.run(), name="relay"), asyncio.create_task(relay.measure(), name="measure")]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="eolake events",
        version="0.1.0",
        lifespan=lifespan,
        description="Catalog and order changes as CloudEvents on an AMQP topic exchange",
    )
    app.state.relay = relay
    install_kit(app, settings, checks={"database": relay.database_answers, "broker": relay.publishing})

    @app.get("/", summary="The exchange, its routing keys and the CloudEvents they carry")
    async def description() -> dict:
        return describe(settings.exchange, {s: settings.source(s) for s in ("catalog", "downloads")})

    return app
