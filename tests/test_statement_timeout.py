"""Database bounds of a service as it runs: a statement past statement_timeout is cancelled and answered 504, a
lock not granted within lock_timeout 503, and the pool stays healthy (readiness says so, honestly)."""

from __future__ import annotations

import json

import httpx
import psycopg
import pytest

from servers import service_process

LIMITS = {"statement_seconds": 1, "lock_seconds": 5, "request_seconds": 10}


@pytest.fixture(scope="module")
def catalog(pg, tmp_path_factory) -> str:
    env = {
        "EOLAKE_CATALOG_DATABASE_URL": pg.app_dsn(),
        "EOLAKE_CATALOG_ROOT_PATH": "/stac",
        "EOLAKE_CATALOG_LIMITS": json.dumps(LIMITS),
    }
    with service_process("eolake_catalog", env, tmp_path_factory.mktemp("logs") / "catalog.log") as url:
        yield url + "/stac"


def test_a_blocked_query_is_cancelled_at_the_statement_timeout(pg, catalog):
    assert httpx.get(catalog + "/search", timeout=30).status_code == 200
    with psycopg.connect(pg.dsn()) as holder:
        holder.execute("LOCK TABLE pgstac.items IN ACCESS EXCLUSIVE MODE")  # every search waits behind it
        blocked = httpx.get(catalog + "/search", timeout=30)
        ready = httpx.get(catalog + "/readyz", timeout=30)
        holder.rollback()
    assert blocked.status_code == 504 and blocked.headers["content-type"] == "application/problem+json"
    assert blocked.json()["detail"] == "database statement exceeded the 1 s statement timeout"
    assert ready.status_code == 200  # the pool itself is fine: readiness does not lie either way
    assert httpx.get(catalog + "/search", timeout=30).status_code == 200  # the connection went back healthy


def test_the_app_role_carries_the_platform_bounds_as_a_backstop(pg):
    from eolake_spec import Limits

    pg.bound_app_role(Limits().postgres_options())
    with psycopg.connect(pg.app_dsn()) as conn:
        shown = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("statement_timeout", "idle_in_transaction_session_timeout", "lock_timeout")
        }
    assert shown == {"statement_timeout": "20s", "idle_in_transaction_session_timeout": "1min", "lock_timeout": "10s"}
