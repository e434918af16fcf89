"""Hydrology virtual stations and their water levels through OGC APIs.

Stations are STAC items of the catalog (read over HTTP, kept briefly: eolake_timeseries.catalog), served as an OGC
API Features collection (`/collections/stations/items`, CQL2 filters, GeoJSON or CSV); a station's water levels are
the hydroweb text its `series` asset points at, read only from the platform's storage (eolake_timeseries.store),
served through OGC API EDR queries on the same collection (position, area, locations; CoverageJSON or CSV) and as
a second Features collection, one feature a measurement (`/collections/water-levels/items`: name, start_time, wse,
wse_u; CQL2, CSV).

Layout: settings (settings.py) → dependencies (deps.py, overridable) → a core without the web framework (query.py,
features.py, edr.py, documents.py) → routers (routes.py).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI

from eolake_kit import install_kit
from eolake_kit.health import Check
from eolake_kit.outbound import async_client
from eolake_timeseries.catalog import CatalogUnavailable, Stations
from eolake_timeseries.query import BadRequest
from eolake_timeseries.routes import RESPONSES, ROUTERS
from eolake_timeseries.settings import TimeseriesSettings
from eolake_timeseries.store import S3Series, series_store


def readiness_checks(app: FastAPI) -> dict[str, Check]:
    """The catalog answers; with S3 storage, the bucket too."""

    async def catalog() -> None:
        await app.state.stations.ping()

    checks: dict[str, Check] = {"catalog": catalog}
    store = app.state.store
    if isinstance(store, S3Series):

        async def storage() -> None:
            await asyncio.to_thread(store.ready)

        checks["storage"] = storage
    return checks


def create_app(settings: TimeseriesSettings | None = None) -> FastAPI:
    settings = settings or TimeseriesSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with async_client(
            [settings.catalog.url],
            timeout=settings.catalog_timeout,
            headers={"Accept": "application/geo+json, application/json"},
        ) as client:
            app.state.stations = Stations(settings, client)
            yield

    app = FastAPI(
        title="eolake time series",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url="/api",
        docs_url="/api.html",
        description="Hydrology virtual stations (OGC API Features: GeoJSON, CSV, CQL2 filters) and their "
        "water levels (OGC API EDR: CoverageJSON, CSV)",
    )
    app.state.settings = settings
    app.state.store = series_store(settings)
    for router in ROUTERS:
        app.include_router(router)
    return install_kit(
        app,
        settings,
        checks=readiness_checks(app),
        status_codes={CatalogUnavailable: 503, BadRequest: 400},
        responses=RESPONSES,
    )
