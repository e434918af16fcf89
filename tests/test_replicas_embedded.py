"""The embedded runner's streaming replica, end to end: `eolake up` of a stack with `database.replica` starts one,
the catalog and the tiles read from it, a client reads its own write through the gateway, and a replica that dies
is started again by the supervisor. On the shared fast-monitoring platform (tests/servers.py), booted anyway."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from test_catalog_cache import collection

from eolake.embedded.postgres import PostgresCluster
from eolake.embedded.replica import StreamingReplica
from eolake_kit.replicas import COOKIE, HEADER
from servers import RunningPlatform, wait_until

pytestmark = [
    pytest.mark.timeout(600),  # the first test may boot the platform's stack
    pytest.mark.skipif(
        not (shutil.which("prometheus") or Path("/usr/bin/prometheus").exists()),
        reason="Prometheus (Debian package prometheus) is not installed",
    ),
    pytest.mark.parametrize("platform", ["fast-monitoring"], indirect=True),
]


@pytest.fixture(scope="module")
def replica(platform: RunningPlatform) -> StreamingReplica:
    return StreamingReplica(platform.state / "postgres-replica", PostgresCluster(platform.state / "postgres"))


def usable(platform: RunningPlatform) -> set[str]:
    """The services whose read replica is usable, as the platform's Prometheus last scraped them."""
    prometheus = platform.runtime()["monitoring"]["prometheus"]["url"]
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": "eolake_database_replica_usable == 1"})
    return {r["metric"]["service"] for r in answer.json()["data"]["result"]}


def test_the_catalog_and_the_tiles_read_from_the_platform_s_replica(platform, replica):
    with psycopg.connect(replica.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    assert wait_until(lambda: {"catalog", "tiles"} <= usable(platform), timeout=60), usable(platform)


def test_a_client_reads_its_write_through_the_gateway(platform):
    cid = f"t-replica-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=f"{platform.base_url}/stac", headers={"X-API-Key": platform.key("admin")}) as client:
        created = client.post("/collections", json=collection(cid))
        assert created.status_code == 201, created.text
        assert created.cookies[COOKIE] == created.headers[HEADER]  # Path=/: every service of the origin
        assert client.get(f"/collections/{cid}").status_code == 200
        assert client.delete(f"/collections/{cid}").status_code in (200, 204)
        assert client.get(f"/collections/{cid}").status_code == 404, "nor a stale read after a delete"


def test_a_replica_that_dies_is_started_again(platform, replica):
    port = replica.port
    replica.stop(mode="immediate")
    assert wait_until(lambda: replica.postmaster_alive(), timeout=60), platform.log_tail()
    assert replica.port == port, "on its port: the services' READ_DATABASE_URL names it"
    assert wait_until(lambda: {"catalog", "tiles"} <= usable(platform), timeout=60), usable(platform)
