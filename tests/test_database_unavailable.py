"""A database that goes away (restart, crash, a terminated session) is a 503 with Retry-After for every driver the
services use, never a 500; a psycopg pool set up with the kit's `reconnecting` serves again within seconds of the
database's return (the default back-off kept services unready about 100 s)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from eolake.embedded.postgres import PostgresCluster
from eolake_kit import ServiceSettings, install_kit
from eolake_kit.bounds import reconnecting
from servers import served, wait_until

BACK_WAIT = 30.0  # well below a backing-off pool's next attempt, well above a reconnecting pool's first


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="eolake-test-dbdown-"))
    root.chmod(0o755)  # as root, the cluster runs as the postgres user
    cluster = PostgresCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


def create_app(dsn: str) -> FastAPI:
    pool = AsyncConnectionPool(dsn, min_size=0, max_size=2, timeout=1, open=False, **reconnecting(AsyncConnectionPool))

    @asynccontextmanager
    async def lifespan(app):
        await pool.open(wait=False)
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/asyncpg")
    async def with_asyncpg(seconds: float = 0) -> dict:
        conn = await asyncpg.connect(dsn)
        try:
            return {"slept": await conn.fetchval("SELECT pg_sleep($1)::text", seconds)}
        finally:
            await conn.close()

    @app.get("/asyncpg-pool-reset")
    async def pool_reset_of_a_dropped_connection() -> dict:
        # what asyncpg's pool raised in release() for a connection the server dropped mid-query (postmaster killed
        # under load, tests/test_operations.py): the pool's own state error, not a connection error class
        raise asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) is in progress")

    @app.get("/psycopg")
    async def with_psycopg_pool() -> dict:
        async with pool.connection() as conn:
            return {"one": (await (await conn.execute("SELECT 1")).fetchone())[0]}

    return install_kit(app, ServiceSettings(service_name="dbdown"))


@pytest.fixture(scope="module")
def service(cluster):
    with served(create_app(cluster.dsn())) as url:
        assert wait_until(lambda: httpx.get(url + "/psycopg").status_code == 200, 10)
        yield url


def unavailable(answer: httpx.Response) -> bool:
    return (
        answer.status_code == 503
        and answer.headers["retry-after"] == "2"
        and answer.headers["content-type"] == "application/problem+json"
        and answer.json()["detail"] == "the database is unavailable; try again shortly"
    )


def test_a_session_terminated_mid_query_is_503(cluster, service):
    answers = []
    request = threading.Thread(target=lambda: answers.append(httpx.get(service + "/asyncpg?seconds=30", timeout=40)))
    request.start()
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        sleeping = "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
        assert wait_until(lambda: admin.execute(sleeping).fetchone(), 10)
        admin.execute(f"SELECT pg_terminate_backend(pid) FROM ({sleeping}) s")
    request.join(40)
    assert answers and unavailable(answers[0]), answers[0].text if answers else "no answer"


def test_a_database_down_is_503_and_served_again_within_seconds_of_its_return(cluster, service):
    cluster.stop(mode="fast")
    try:
        for _ in range(4):  # long enough for a default pool's back-off to have grown
            assert unavailable(httpx.get(service + "/psycopg", timeout=10))
            assert unavailable(httpx.get(service + "/asyncpg", timeout=10))
    finally:
        cluster.start(cluster.port)
    back = time.monotonic()
    # A pool that backs off (psycopg's default: a minute and more between attempts) would not be back within this
    # wait; the reconnecting pool is, whatever the machine's load.
    assert wait_until(lambda: httpx.get(service + "/psycopg", timeout=10).status_code == 200, BACK_WAIT)
    print(f"\nthe pool served again {time.monotonic() - back:.1f} s after the database")
    assert httpx.get(service + "/asyncpg").json() == {"slept": ""}


def test_healthz_shows_the_running_version(service):
    answer = httpx.get(service + "/healthz").json()
    assert answer["status"] == "alive" and answer["version"] and answer["release"]


def test_a_pool_that_cannot_reset_a_dropped_connection_is_503(service):
    assert unavailable(httpx.get(service + "/asyncpg-pool-reset", timeout=10))
