"""Reads from a streaming replica, as behaviour: a replica of the session's cluster whose replay the tests pause, so
that it is stale on purpose; a writer reads its own writes all the same (the read-after cookie or header), others
read the replica; the search cache stays right with two servers at different positions; a replica down or too far
behind leaves the reads to the primary. Real PostgreSQL (a hot standby), real catalog processes."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI, Request
from test_catalog_cache import collection, item

from eolake.embedded.environment import service_env
from eolake.embedded.replica import SLOT, StreamingReplica
from eolake.embedded.state import StateDir
from eolake_kit import ServiceSettings, install_kit
from eolake_kit.auth import create_api_key
from eolake_kit.outbound import async_client
from eolake_kit.replicas import COOKIE, HEADER, ReplicaLag, lsn_number, lsn_text
from eolake_spec import Platform, load_stack
from servers import served, service_process, wait_until

PAUSED_FOR_LONG = "300"  # seconds of lag tolerated: a paused replica stays the one read from during a test
SHORT_LAG = "1"
USABLE = 'eolake_database_replica_usable{service="catalog"} 1.0'


@pytest.fixture(scope="module")
def state():
    """A state directory holding the replica, where the embedded runner keeps it."""
    root = Path(tempfile.mkdtemp(prefix="eolake-test-replica-"))
    root.chmod(0o755)  # as root, the replica runs as the postgres user
    yield StateDir(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def replica(pg, state):
    standby = StreamingReplica(state.replica, pg)
    try:
        standby.start()
        yield standby
    finally:
        standby.discard()


@pytest.fixture(scope="module")
def admin_key(tmp_path_factory) -> tuple[str, str]:
    path = tmp_path_factory.mktemp("keys") / "api-keys.json"
    return str(path), create_api_key(path, "admin", "admin")


def catalog_env(pg, replica, keys_file: str, max_lag: str, service: str = "catalog") -> dict[str, str]:
    values = {
        "DATABASE_URL": pg.app_dsn(),
        "READ_DATABASE_URL": replica.app_dsn(),
        "MAX_REPLICA_LAG_SECONDS": max_lag,
        "AUTH__API_KEYS_FILE": keys_file,
        # Its own prefix, over http: the cookie a write sets (Path=/, not Secure) comes back here as from a browser.
        "PUBLIC_URL": "http://eolake.example.org",
        "ROOT_PATH": "",
    }
    return {f"EOLAKE_{service.upper()}_{key}": value for key, value in values.items()}


@pytest.fixture(scope="module")
def catalog(pg, replica, admin_key, tmp_path_factory) -> str:
    env = catalog_env(pg, replica, admin_key[0], PAUSED_FOR_LONG)
    with service_process("eolake_catalog", env, tmp_path_factory.mktemp("logs") / "catalog.log", "/readyz") as url:
        with httpx.Client(base_url=url, headers={"X-API-Key": admin_key[1]}) as writer:
            assert writer.post("/collections", json=collection("t-replica")).status_code == 201
        replica.wait_replayed(current_position(pg))
        assert wait_until(lambda: replica_usable(url), timeout=30)
        yield url


def replica_usable(url: str, service: str = "catalog") -> bool:
    return USABLE.replace("catalog", service) in httpx.get(f"{url}/metrics").text


@pytest.fixture(scope="module")
def tiles(pg, replica, admin_key, tmp_path_factory) -> str:
    env = catalog_env(pg, replica, admin_key[0], PAUSED_FOR_LONG, service="tiles")
    with service_process("eolake_tiles", env, tmp_path_factory.mktemp("logs") / "tiles.log", "/readyz") as url:
        assert wait_until(lambda: replica_usable(url, "tiles"), timeout=30)
        yield url


@pytest.fixture
def paused(pg, replica):
    """The replica replays nothing until the test ends: what is written meanwhile is on the primary only."""
    with psycopg.connect(replica.dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            conn.execute("SELECT pg_wal_replay_resume()")
    replica.wait_replayed(current_position(pg))


def current_position(pg) -> str:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        return conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]


def add_item(client: httpx.Client, iid: str, n: int) -> httpx.Response:
    response = client.post("/collections/t-replica/items", json=item("t-replica", iid, n))
    assert response.status_code == 201, response.text
    return response


def found(client: httpx.Client, iid: str, **kwargs) -> bool:
    response = client.get(f"/collections/t-replica/items/{iid}", **kwargs)
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


def searched(client: httpx.Client) -> set[str]:
    response = client.post("/search", json={"collections": ["t-replica"], "limit": 50})
    assert response.status_code == 200, response.text
    return {feature["id"] for feature in response.json()["features"]}


# ------------------------------------------------------------------------------------------------ pure logic


def test_positions_are_read_and_written_as_postgresql_does():
    assert lsn_number("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert lsn_text(lsn_number("0/16B3748")) == "0/16B3748"
    for bad in ("", "16B374D848", "0/xyz", "1/2/3", "123456789/0"):
        with pytest.raises(ValueError):
            lsn_number(bad)


def test_a_replica_behind_the_primary_of_max_lag_ago_is_not_used():
    asyncio.run(lag_scenario())


async def lag_scenario() -> None:
    positions = {"primary": 100, "replica": 100}

    async def primary() -> int:
        return positions["primary"]

    async def replayed() -> int:
        if positions["replica"] is None:
            raise OSError("connection refused")
        return positions["replica"]

    recent = ReplicaLag("test", 0.0, primary, replayed)  # compared with the primary now
    assert await recent.check()
    positions["primary"] = 200
    assert not await recent.check()
    positions["replica"] = 200
    assert await recent.check()
    patient = ReplicaLag("test", 1000.0, primary, replayed)  # compared with its first sample (200)
    assert await patient.check()
    positions["primary"] = 300
    assert await patient.check(), "the primary moved on, but not max_lag ago"
    positions["replica"] = None
    assert not await patient.check(), "a replica that does not answer"
    positions["replica"] = 300
    assert await patient.check()
    patient.failed()
    assert not patient.usable, "a read that could not reach it: the primary serves until the next check"


def test_the_replica_follows_through_a_slot_that_outlives_its_stops(pg, replica):
    """Stopped while the primary writes and checkpoints (WAL recycled), it catches up once started again."""
    port = replica.port
    replica.stop()
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS replica_follows (n int)")
        for _ in range(3):  # segments the replica has not received, which checkpoints would otherwise remove
            conn.execute("INSERT INTO replica_follows SELECT generate_series(1, 1000)")
            conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
        slot = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (SLOT,)).fetchone()
        assert slot == (False,), "the slot stays while its replica is stopped"
    replica.start(port)
    with psycopg.connect(replica.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM replica_follows").fetchone() == (3000,)
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("DROP TABLE replica_follows")


def test_embedded_services_that_can_read_from_the_replica_are_told_where(pg, replica, state):
    document = load_stack("local").model_dump(mode="json")
    document["database"]["replica"] = {}
    platform = Platform.model_validate(document)
    gateway = "http://127.0.0.1:8080"
    catalog = service_env(platform, state, pg.app_dsn(), "catalog", gateway, "test")
    assert catalog["EOLAKE_CATALOG_READ_DATABASE_URL"] == replica.app_dsn() != pg.app_dsn()
    assert "EOLAKE_DOWNLOADS_READ_DATABASE_URL" not in service_env(
        platform, state, pg.app_dsn(), "downloads", gateway, "x"
    )
    with psycopg.connect(catalog["EOLAKE_CATALOG_READ_DATABASE_URL"], autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery(), current_user").fetchone() == (True, "eolake_app")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE nothing_written_here (x int)")


def test_a_service_sends_the_token_on_to_the_peers_it_calls_never_to_providers():
    echo = FastAPI()

    @echo.get("/seen")
    def seen(request: Request) -> dict:
        return {"token": request.headers.get(HEADER)}

    with served(echo) as peer, served(echo) as provider:
        caller = FastAPI()

        @caller.get("/call")
        async def call() -> dict:
            async with async_client([peer, provider], read_after_to=[peer]) as client:
                return {
                    "peer": (await client.get(f"{peer}/seen")).json()["token"],
                    "provider": (await client.get(f"{provider}/seen")).json()["token"],
                }

        with served(install_kit(caller, ServiceSettings())) as url:
            assert httpx.get(f"{url}/call", cookies={COOKIE: "1/A"}).json() == {"peer": "1/A", "provider": None}
            assert httpx.get(f"{url}/call", headers={HEADER: "2/b"}).json() == {"peer": "2/B", "provider": None}
            assert httpx.get(f"{url}/call").json() == {"peer": None, "provider": None}


# ------------------------------------------------------------------------------------------------ a stale replica


def test_a_writer_reads_its_own_write_others_read_the_replica(catalog, admin_key, paused):
    with httpx.Client(base_url=catalog, headers={"X-API-Key": admin_key[1]}) as writer:
        written = add_item(writer, "r-1", 1)
        token = written.headers[HEADER]
        assert written.cookies[COOKIE] == token
        assert "HttpOnly" in written.headers["set-cookie"]
        assert found(writer, "r-1"), "the writer's client sends the cookie back: the primary answers"
    with httpx.Client(base_url=catalog) as anyone:
        assert not found(anyone, "r-1"), "without a token: the replica, which has not replayed the write"
        assert found(anyone, "r-1", headers={HEADER: token}), "the header does what the cookie does"
        assert found(anyone, "r-1", headers={HEADER: "0/0"}) is False, "a token the replica has replayed"


def test_the_search_cache_keeps_each_server_s_answer_apart(catalog, admin_key, paused):
    with httpx.Client(base_url=catalog) as anyone:
        before = searched(anyone)
        assert searched(anyone) == before  # asked twice: kept (stamped by the replica)
        with httpx.Client(base_url=catalog, headers={"X-API-Key": admin_key[1]}) as writer:
            add_item(writer, "r-2", 2)
            for _ in range(3):  # computed, then kept under the primary's stamp
                assert searched(writer) == before | {"r-2"}
            for _ in range(2):  # the replica's stamp is older: never the primary's newer answer, never a stale one
                assert searched(anyone) == before
            assert searched(writer) == before | {"r-2"}


def test_a_search_just_registered_is_found_by_who_registered_it(tiles, admin_key, paused):
    body = {"collections": ["t-replica"], "ids": [uuid.uuid4().hex]}  # never registered before: on the primary only
    with (
        httpx.Client(base_url=tiles, headers={"X-API-Key": admin_key[1]}) as user,
        httpx.Client(base_url=tiles) as anyone,
    ):
        registered = user.post("/searches/register", json=body)
        assert registered.status_code == 200, registered.text
        assert registered.cookies[COOKIE] == registered.headers[HEADER]
        search = registered.json()["id"]
        # Asked first: titiler-pgstac keeps a search's info in memory once found.
        assert anyone.get(f"/searches/{search}/info").status_code == 404, "the paused replica does not have it yet"
        assert user.get(f"/searches/{search}/info").status_code == 200, "the cookie: read from the primary"
        empty = {"type": "FeatureCollection", "features": []}
        statistics = anyone.post("/collections/t-replica/statistics", json=empty)
        assert HEADER not in statistics.headers, "a read sent over POST answers no position"
        assert anyone.get("/searches/x/info", headers={HEADER: "nonsense"}).status_code == 400


def test_a_malformed_token_is_refused(catalog):
    response = httpx.get(f"{catalog}/collections/t-replica/items/r-1", headers={HEADER: "yesterday"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert HEADER in response.json()["detail"]
    spoilt = httpx.get(f"{catalog}/collections/t-replica", cookies={COOKIE: "spoilt"})
    assert spoilt.status_code == 200, "a spoilt cookie is ignored: it is the browser's to keep"
    for probe in ("healthz", "readyz", "metrics"):  # they read nothing a client wrote
        assert httpx.get(f"{catalog}/{probe}", headers={HEADER: "yesterday"}).status_code == 200, probe


def test_the_token_is_in_the_openapi_document(catalog):
    paths = httpx.get(f"{catalog}/api").json()["paths"]
    write = paths["/collections/{collection_id}/items"]["post"]
    assert HEADER in write["responses"]["201"]["headers"]
    for operation in (write, paths["/search"]["get"], paths["/search"]["post"]):
        assert HEADER in {parameter["name"] for parameter in operation["parameters"]}
        assert operation["responses"]["400"]["content"]["application/problem+json"]
    for probe in ("/healthz", "/readyz"):
        assert HEADER not in {p["name"] for p in paths[probe]["get"].get("parameters", [])}, probe


def test_the_replica_is_read_after_replay_resumes(catalog):
    assert found(httpx.Client(base_url=catalog), "r-1")


# ------------------------------------------------------------------------------------------------ faults


def test_a_replica_too_far_behind_leaves_reads_to_the_primary(pg, replica, admin_key, paused, tmp_path):
    env = catalog_env(pg, replica, admin_key[0], SHORT_LAG)
    with service_process("eolake_catalog", env, tmp_path / "catalog.log", "/readyz") as url:
        with httpx.Client(base_url=url, headers={"X-API-Key": admin_key[1]}) as writer:
            add_item(writer, "r-3", 3)
        with httpx.Client(base_url=url) as anyone:
            assert wait_until(lambda: found(anyone, "r-3"), timeout=30), "a replica paused for longer than its bound"
            metrics = anyone.get("/metrics").text
    assert 'eolake_database_replica_usable{service="catalog"} 0.0' in metrics


def test_a_replica_down_leaves_reads_to_the_primary(catalog, admin_key, replica):
    replica.stop(mode="immediate")
    try:
        with httpx.Client(base_url=catalog, headers={"X-API-Key": admin_key[1]}) as writer:
            add_item(writer, "r-4", 4)
        with httpx.Client(base_url=catalog) as anyone:
            assert found(anyone, "r-4"), "the first read finds the replica gone, and reads the primary"
            assert anyone.get("/readyz").status_code == 200, "ready: the primary serves every read"
    finally:
        replica.start(port=replica.port)
    assert wait_until(lambda: replica_usable(catalog), timeout=30), "the replica is read again"
