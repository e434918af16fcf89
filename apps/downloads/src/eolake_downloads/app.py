"""The download service: orders (STAC order vocabulary), retrievals of offline items, per-user quotas, resumable
checksummed downloads. Settings → dependencies (the pool, the catalog, the job queue, in `Orders`) → the orders'
core (eolake_downloads.orders) → routes (eolake_downloads.routes)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import procrastinate
import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.responses import Response
from psycopg.rows import dict_row

from eolake_downloads import metrics
from eolake_downloads.catalog import Catalog
from eolake_downloads.errors import Refused
from eolake_downloads.orders import Orders
from eolake_downloads.routes import router
from eolake_downloads.schema import SEARCH_PATH, job_app
from eolake_downloads.settings import DownloadsSettings
from eolake_downloads.worker import defer_file
from eolake_kit import install_kit, problem
from eolake_kit.bounds import reconnecting

log = logging.getLogger("eolake.downloads")


def connection_pool(settings: DownloadsSettings) -> psycopg_pool.AsyncConnectionPool:
    return psycopg_pool.AsyncConnectionPool(
        settings.dsn,
        min_size=0,
        max_size=max(2, settings.pool_size - 1),
        kwargs={"options": f"{SEARCH_PATH} {settings.postgres_options()}", "row_factory": dict_row},
        open=False,
        timeout=10,
        **reconnecting(psycopg_pool.AsyncConnectionPool),
    )


class JobQueue:
    """Staging jobs (procrastinate), opened at start when the database answers, else at the first order."""

    def __init__(self, settings: DownloadsSettings):
        self.jobs: procrastinate.App = job_app(settings.dsn, pool_size=2, options=settings.postgres_options())
        self.opened = False

    async def open(self) -> None:
        try:
            await self.jobs.open_async()
            self.opened = True
        except Exception as e:  # Postgres down at start: readiness says so; deferring reopens
            log.warning("job queue not reachable yet: %s", e)

    async def __call__(self, file_ids: list[str]) -> None:
        if not self.opened:
            await self.jobs.open_async()
            self.opened = True
        for fid in file_ids:
            await defer_file(self.jobs, fid)

    async def close(self) -> None:
        if self.opened:
            await self.jobs.close_async()


async def queue_depth_loop(pool: psycopg_pool.AsyncConnectionPool, interval: float) -> None:
    while True:
        try:
            async with pool.connection() as conn:
                row = await (
                    await conn.execute("SELECT count(*) AS n FROM files WHERE state IN ('queued', 'staging')")
                ).fetchone()
            metrics.QUEUE_DEPTH.labels(metrics.SERVICE).set(row["n"])
        except Exception as e:
            log.debug("queue depth not refreshed: %s", e)
        await asyncio.sleep(interval)


async def refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)  # the handler of Refused only
    return problem(exc.status, exc.detail, headers=exc.headers, **exc.extra)


def create_app(settings: DownloadsSettings | None = None) -> FastAPI:
    settings = settings or DownloadsSettings()
    pool, queue, catalog = connection_pool(settings), JobQueue(settings), Catalog(settings)
    orders = Orders(settings, pool, catalog, queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await pool.open(wait=False)
        await queue.open()
        task = asyncio.create_task(queue_depth_loop(pool, settings.maintenance_interval))
        yield
        task.cancel()
        await catalog.aclose()
        await queue.close()
        await pool.close()

    app = FastAPI(
        title="eolake downloads",
        version="0.1.0",
        lifespan=lifespan,
        description="Orders for catalog items, staged by workers; retrievals of offline items; "
        "resumable, checksummed downloads.",
    )
    app.state.orders = orders
    app.include_router(router)
    install_kit(
        app,
        settings,
        checks={"database": orders.check_database},  # it answers QuotaExceeded too
        status_codes={psycopg.OperationalError: 503, psycopg_pool.PoolTimeout: 503},
    )
    app.add_exception_handler(Refused, refused)
    return app
