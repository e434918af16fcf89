"""Events (issue 17): catalog and order changes reach AMQP subscribers as CloudEvents, at least once, in order, from a
transactional outbox, whatever happens to the relay or the broker.

A real RabbitMQ (eolake's embedded broker, eolake.embedded.broker) and the real relay process (`python -m
eolake_events`) on the session's database; changes are made the ways the platform makes them (pgstac's functions,
the downloads' orders table) and read back with the Python client's subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from eolake_client.events import bind, subscribe
from eolake_events.relay import Relay as EventsRelay
from eolake_events.schema import migrate, switch
from eolake_events.settings import EventsSettings
from infra_program import Program, render, write_stack
from psycopg.types.json import Jsonb

from eolake.embedded import processes
from eolake.embedded.broker import Broker, link_plugins
from eolake.embedded.postgres import free_port
from eolake.onprem import units
from eolake_spec import load_stack
from servers import wait_until

KEYS = ("catalog.#", "downloads.order.#")


class RunningBroker:
    """eolake's embedded RabbitMQ in a folder of its own, stopped and started again as a test needs."""

    def __init__(self, root: Path):
        self.broker, self.log, self.process = Broker(root / "rabbitmq"), root / "rabbitmq.log", None

    def start(self) -> None:
        ports = self.broker.prepare()  # the AMQP port of the last start: the relay's URL stays right
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.broker.command(),
                env=self.broker.env(ports),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        processes.wait_serving(self.process, f"http://127.0.0.1:{ports.metrics}/metrics", self.log, 90, processes.ok)

    def stop(self) -> None:
        processes.stop(self.process, 60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # its epmd

    @property
    def url(self) -> str:
        return self.broker.url()


class Relay:
    """The events service's process (the relay), started, killed and started again by the tests."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log, self.process = env, log, None
        self.url = f"http://127.0.0.1:{env['EOLAKE_EVENTS_PORT']}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "eolake_events"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        processes.wait_serving(self.process, self.url + "/healthz", self.log, 60, processes.ok)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process:
            processes.stop(self.process, 30)

    def readiness(self) -> int:
        return httpx.get(self.url + "/readyz", timeout=5).status_code

    def metric(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics", timeout=5).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )


@pytest.fixture(scope="module")
def broker():
    root = Path(tempfile.mkdtemp(prefix="eolake-test-broker-"))
    running = RunningBroker(root)
    running.start()
    yield running
    running.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def relay(pg, broker, tmp_path_factory):
    env = {
        **os.environ,
        "EOLAKE_EVENTS_DATABASE_URL": pg.app_dsn(),
        "EOLAKE_EVENTS_AMQP_URL": broker.url,
        "EOLAKE_EVENTS_PORT": str(free_port()),
        "EOLAKE_EVENTS_HOST": "127.0.0.1",
        "EOLAKE_EVENTS_POLL_SECONDS": "0.5",
        "EOLAKE_EVENTS_RETRY_SECONDS": "0.2",
        "EOLAKE_EVENTS_RETRY_MAX_SECONDS": "1",
        "EOLAKE_EVENTS_SOURCES": json.dumps({"catalog": "urn:test:stac"}),
    }
    running = Relay(env, tmp_path_factory.mktemp("relay") / "relay.log")
    running.start()
    assert wait_until(lambda: running.readiness() == 200, 30), running.log.read_text()[-2000:]
    yield running
    running.stop()
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        switch(conn, False)  # the rest of the session writes no events nobody relays


@pytest.fixture
def db(pg):
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("SET search_path = pgstac, public")
        yield conn


@pytest.fixture
def queue(broker) -> str:
    """A durable queue bound to every event key, declared before the changes are made."""
    name = f"test-{uuid.uuid4().hex[:8]}"

    async def declare() -> None:
        import aio_pika

        async with await aio_pika.connect(broker.url) as connection:
            await bind(connection, KEYS, queue=name)

    asyncio.run(declare())
    return name


def received(url: str, queue: str, count: int, keys: tuple[str, ...] = KEYS, timeout: float = 30) -> list[dict]:
    """The next `count` events of the queue (TimeoutError if fewer come)."""

    async def collect() -> list[dict]:
        events = []
        if count == 0:
            return events
        async with asyncio.timeout(timeout), contextlib.aclosing(subscribe(url, keys, queue=queue)) as stream:
            async for event in stream:
                events.append(event)
                if len(events) == count:
                    return events
        return events

    return asyncio.run(collect())


def waiting(broker: RunningBroker, queue: str) -> int:
    async def count() -> int:
        import aio_pika

        async with await aio_pika.connect(broker.url) as connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            return declared.declaration_result.message_count

    return asyncio.run(count())


def collection(cid: str, title: str = "events test") -> str:
    return json.dumps(
        {
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": cid,
            "title": title,
            "description": "x",
            "license": "CC-BY-4.0",
            "links": [],
            "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [[None, None]]}},
        }
    )


def item(cid: str, iid: str, **properties) -> str:
    return json.dumps(
        {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": iid,
            "collection": cid,
            "links": [],
            "assets": {},
            "geometry": {"type": "Point", "coordinates": [0.5, 0.5]},
            "bbox": [0.5, 0.5, 0.5, 0.5],
            "properties": {"datetime": "2023-01-01T00:00:00Z", **properties},
        }
    )


def new_order(db: psycopg.Connection, status: str = "ordered") -> str:
    order_id = str(uuid.uuid4())
    db.execute(
        "INSERT INTO downloads.orders (id, owner, status, request) VALUES (%s, 'events-test', %s, %s)",
        (order_id, status, Jsonb({"items": []})),
    )
    return order_id


def outbox(db: psycopg.Connection, like: str) -> list[tuple[str, str]]:
    """The outbox rows of these subjects, as (event id, routing key), in order."""
    return db.execute(
        "SELECT event->>'id', routing_key FROM eolake_events.outbox WHERE subject LIKE %s ORDER BY id", (like,)
    ).fetchall()


def test_every_change_reaches_a_subscriber_in_order(relay, broker, queue, db):
    cid = f"ev-{uuid.uuid4().hex[:8]}"
    published = relay.metric("eolake_events_published_total")
    db.execute("SELECT create_collection(%s)", (collection(cid),))
    db.execute("SELECT create_item(%s)", (item(cid, "a"),))
    db.execute("SELECT update_item(%s)", (item(cid, "a", cloud=3),))  # pgstac: delete + insert, one transaction
    with db.transaction():  # two changes, one commit: two events
        db.execute("SELECT create_item(%s)", (item(cid, "b"),))
        db.execute("SELECT delete_item('a', %s)", (cid,))
    db.execute("SELECT update_collection(%s)", (collection(cid, "renamed"),))
    order_id = new_order(db)
    db.execute("UPDATE downloads.orders SET status = 'succeeded' WHERE id = %s", (order_id,))
    db.execute("UPDATE downloads.orders SET reason = 'unchanged status' WHERE id = %s", (order_id,))  # no event
    db.execute("SELECT delete_collection(%s)", (cid,))

    events = received(broker.url, queue, 9)
    assert [(e["type"].removeprefix("org.eolake."), e["subject"]) for e in events] == [
        ("catalog.collection.created", f"collections/{cid}"),
        ("catalog.item.created", f"collections/{cid}/items/a"),
        ("catalog.item.updated", f"collections/{cid}/items/a"),
        ("catalog.item.created", f"collections/{cid}/items/b"),
        ("catalog.item.deleted", f"collections/{cid}/items/a"),
        ("catalog.collection.updated", f"collections/{cid}"),
        ("downloads.order.ordered", f"orders/{order_id}"),
        ("downloads.order.succeeded", f"orders/{order_id}"),
        ("catalog.collection.deleted", f"collections/{cid}"),
    ]
    assert len({e["id"] for e in events}) == 9 and {e["specversion"] for e in events} == {"1.0"}
    assert {e["source"] for e in events} == {"urn:test:stac", "urn:eolake:downloads"}
    assert events[5]["data"] == {"id": cid, "title": "renamed"}
    assert events[7]["data"]["previous_status"] == "ordered" and events[7]["data"]["status"] == "succeeded"
    assert events[2]["data"]["collection"] == cid and events[2]["data"]["datetime"].startswith("2023-01-01")
    assert wait_until(lambda: not outbox(db, f"%{cid}%") and not outbox(db, f"orders/{order_id}"))
    assert waiting(broker, queue) == 0  # each exactly once when nothing failed
    assert relay.metric("eolake_events_published_total") - published >= 9
    description = httpx.get(relay.url + "/").json()
    assert description["exchange"] == {"name": "eolake.events", "type": "topic", "durable": True}
    assert {m["routing_key"] for m in description["messages"]} == {
        "catalog.collection.{action}.{collection}",
        "catalog.item.{action}.{collection}",
        "downloads.order.{state}",
    }


def test_broker_down_and_relay_killed_between_commit_and_publish(relay, broker, queue, db):
    """The broker stops: changes still commit, into the outbox, which the metric shows; the relay is killed (SIGKILL)
    with the events committed and unpublished, and started again while the broker is still down; once the broker is
    back, every event is delivered, once, in order, with the ids the outbox held, and the outbox is empty."""
    cid = f"ev-{uuid.uuid4().hex[:8]}"
    db.execute("SELECT create_collection(%s)", (collection(cid),))
    received(broker.url, queue, 1)
    broker.stop()
    try:
        db.execute("SELECT create_item(%s)", (item(cid, "x"),))
        db.execute("SELECT update_item(%s)", (item(cid, "x", cloud=1),))
        order_id = new_order(db)
        rows = outbox(db, f"%{cid}%") + outbox(db, f"orders/{order_id}")
        assert [key for _, key in rows] == [
            f"catalog.item.created.{cid}",
            f"catalog.item.updated.{cid}",
            "downloads.order.ordered",
        ]  # one row per event
        assert wait_until(lambda: relay.metric("eolake_events_outbox_depth") == 3, 10)
        assert wait_until(lambda: relay.readiness() == 503, 10)
        relay.kill()
        db.execute("SELECT delete_item('x', %s)", (cid,))  # no relay at all: committed all the same
        relay.start()
        assert wait_until(lambda: relay.metric("eolake_events_outbox_depth") == 4, 10)
        assert outbox(db, f"%{cid}%")[:2] == rows[:2]  # the same rows, the same event ids
    finally:
        broker.start()
    events = received(broker.url, queue, 4)
    assert [e["id"] for e in events[:3]] == [event_id for event_id, _ in rows]
    assert events[3]["type"] == "org.eolake.catalog.item.deleted"
    assert wait_until(lambda: relay.metric("eolake_events_outbox_depth") == 0, 15)
    assert wait_until(lambda: relay.readiness() == 200, 15)
    assert waiting(broker, queue) == 0
    assert relay.metric("eolake_events_failures_total") >= 1
    db.execute("SELECT delete_collection(%s)", (cid,))


def test_delete_refused_after_the_confirm_redelivers_the_same_event(relay, broker, queue, db):
    """The broker confirmed, then the database refuses the relay's delete: the row stays (one row for the event)
    and is published again, with the same id, until its delete succeeds; then nothing more."""
    cid = f"ev-{uuid.uuid4().hex[:8]}"
    db.execute("REVOKE DELETE ON eolake_events.outbox FROM eolake_app")
    try:
        db.execute("SELECT create_collection(%s)", (collection(cid),))
        first = received(broker.url, queue, 2)  # published, not deleted, published again
        assert len(outbox(db, f"collections/{cid}")) == 1
    finally:
        db.execute("GRANT DELETE ON eolake_events.outbox TO eolake_app")
    assert wait_until(lambda: not outbox(db, f"collections/{cid}"))
    again = received(broker.url, queue, waiting(broker, queue))  # the copies sent before the delete succeeded
    assert {e["id"] for e in first + again} == {first[0]["id"]}
    assert first[0]["type"] == "org.eolake.catalog.collection.created"
    db.execute("SELECT delete_collection(%s)", (cid,))
    assert received(broker.url, queue, 1)[0]["type"] == "org.eolake.catalog.collection.deleted"


def test_client_command_prints_the_events(relay, broker, queue, db):
    """`eolake-client events`: one JSON line per event, from a durable queue of the user's; bad input and an
    unreachable broker are one line on stderr and their exit codes."""
    cid = f"ev-{uuid.uuid4().hex[:8]}"
    db.execute("SELECT create_collection(%s)", (collection(cid),))
    command = [sys.executable, "-m", "eolake_client.cli", "events", broker.url, "--queue", queue, "--limit", "1"]
    for key in KEYS:
        command += ["--key", key]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    event = json.loads(done.stdout)
    assert (event["type"], event["subject"]) == ("org.eolake.catalog.collection.created", f"collections/{cid}")
    assert waiting(broker, queue) == 0  # acknowledged before the command left
    db.execute("SELECT delete_collection(%s)", (cid,))
    received(broker.url, queue, 1)
    refused = subprocess.run(
        [*command[:4], "amqp://nobody:wrong@127.0.0.1:1/"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "EOLAKE_AMQP_URL": ""},
    )
    assert refused.returncode == 4 and refused.stderr.count("\n") == 1 and "cannot reach the broker" in refused.stderr
    missing = subprocess.run(
        command[:4], capture_output=True, text=True, timeout=60, env={**os.environ, "EOLAKE_AMQP_URL": ""}
    )
    assert missing.returncode == 2 and "give the broker's URL" in missing.stderr


def test_no_outbox_while_switched_off(pg, db):
    """The triggers write only once a relay switched the outbox on: a platform without events keeps no outbox, and
    switching it off (a platform that stops publishing) drops what was left; the migration runs again unchanged."""
    migrate(pg.dsn())
    was_on = db.execute("SELECT enabled FROM eolake_events.switch").fetchone()[0]
    switch(db, False)
    try:
        cid = f"ev-{uuid.uuid4().hex[:8]}"
        db.execute("SELECT create_collection(%s)", (collection(cid),))
        db.execute("SELECT create_item(%s)", (item(cid, "a"),))
        assert outbox(db, f"%{cid}%") == []
        db.execute("SELECT delete_collection(%s)", (cid,))
    finally:
        switch(db, was_on)


def test_relay_waiting_on_a_refusing_broker_goes_on_once_it_listens():
    """A broker that refused (still starting) is watched during the wait before the next try: the wait ends when its
    port accepts connections, not after the backoff; with nobody listening it lasts the backoff."""
    port = free_port()
    relay = EventsRelay(EventsSettings(amqp_url=f"amqp://u:p@127.0.0.1:{port}/"))

    async def listening_later() -> bool:
        waiting = asyncio.create_task(relay.until_broker_listens(3600))
        await asyncio.sleep(0.5)
        nobody_yet = not waiting.done()
        server = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", port)
        async with server:
            await asyncio.wait_for(waiting, 60)  # not the hour
        return nobody_yet

    assert asyncio.run(listening_later())
    asyncio.run(asyncio.wait_for(relay.until_broker_listens(0.3), 60))  # nobody listens: the backoff, then it returns


def fake_application(plugins: Path, name: str, version: str, needs: list[str]) -> None:
    (plugins / f"{name}-{version}" / "ebin").mkdir(parents=True)
    app = f'{{application, {name}, [{{vsn, "{version}"}}, {{applications, [kernel, stdlib, {", ".join(needs)}]}}]}}.'
    (plugins / f"{name}-{version}" / "ebin" / f"{name}.app").write_text(app.replace(", ]", "]"))


def test_the_broker_gets_only_the_plugins_it_runs_and_new_links_after_an_upgrade(tmp_path):
    """The node's plugins directory: links to the wanted applications and what they need (from their .app files,
    Erlang's own applications left out), nothing else; linked again when the installed version changed."""
    system, target = tmp_path / "system", tmp_path / "plugins"
    for name, needs in {
        "rabbit": ["ra", "ranch"],
        "ra": [],
        "ranch": [],
        "prom": ["cowboy"],
        "cowboy": ["ranch"],
    }.items():
        fake_application(system, name, "3.10.8", needs)
    fake_application(system, "mqtt", "3.10.8", ["rabbit"])  # a plugin nobody enabled
    link_plugins(target, ["rabbit", "prom"], system)
    assert sorted(p.name for p in target.iterdir()) == [
        f"{n}-3.10.8" for n in ("cowboy", "prom", "ra", "rabbit", "ranch")
    ]
    assert (target / "ra-3.10.8").resolve() == (system / "ra-3.10.8").resolve()

    upgraded = tmp_path / "upgraded"
    for name in ("rabbit", "ra", "ranch"):
        fake_application(upgraded, name, "3.11.0", ["ra", "ranch"] if name == "rabbit" else [])
    link_plugins(target, ["rabbit"], upgraded)
    assert sorted(p.name for p in target.iterdir()) == ["ra-3.11.0", "rabbit-3.11.0", "ranch-3.11.0"]


def test_spec_gives_the_relay_its_exchange_and_sources():
    platform = load_stack("local")
    env = platform.service_env("events")
    assert env["EOLAKE_EVENTS_EXCHANGE"] == "eolake.events"
    assert json.loads(env["EOLAKE_EVENTS_SOURCES"]) == {
        "catalog": platform.public_url("catalog"),
        "downloads": platform.public_url("downloads"),
    }


def test_eolake_up_runs_the_broker_and_the_relay(platform):
    """The embedded platform: its own RabbitMQ and the events service; a collection and an item written through the
    catalog's API reach a subscriber, with the catalog's public URL as their source."""
    broker = Broker(platform.state / "rabbitmq")
    assert broker.describe()["amqp"].startswith("amqp://127.0.0.1:")
    base, admin = platform.base_url, {"X-API-Key": platform.key("admin")}
    assert httpx.get(f"{base}/events/readyz", timeout=10).status_code == 200
    assert httpx.get(f"{base}/events/", timeout=10).json()["exchange"]["name"] == "eolake.events"
    name, cid = f"up-{uuid.uuid4().hex[:8]}", f"ev-{uuid.uuid4().hex[:8]}"

    async def declare() -> None:
        import aio_pika

        async with await aio_pika.connect(broker.url()) as connection:
            await bind(connection, (f"catalog.*.*.{cid}",), queue=name)

    asyncio.run(declare())
    with httpx.Client(base_url=f"{base}/stac", headers=admin, timeout=30) as stac:
        for answer in (
            stac.post("/collections", json=json.loads(collection(cid))),
            stac.post(f"/collections/{cid}/items", json=json.loads(item(cid, "a"))),
            stac.delete(f"/collections/{cid}/items/a"),
        ):
            assert answer.status_code in (200, 201, 204), answer.text
        events = received(broker.url(), name, 3, keys=(f"catalog.*.*.{cid}",))
        stac.delete(f"/collections/{cid}")
    assert [e["type"] for e in events] == [
        "org.eolake.catalog.collection.created",
        "org.eolake.catalog.item.created",
        "org.eolake.catalog.item.deleted",
    ]
    assert {e["source"] for e in events} == {f"{base}/stac"}


def with_events(broker: str | None):
    def edit(platform: dict) -> None:
        platform["services"]["events"] = {}
        if "kubernetes" in platform:  # its image, like the catalog's
            images = platform["kubernetes"]["images"]
            images["events"] = {**images["catalog"], "repository": images["catalog"]["repository"] + "-events"}
        if broker:
            platform["events"] = {"broker": broker}

    return edit


def test_kubernetes_runs_the_relay_only_with_an_external_broker(tmp_path):
    """With `events` (broker external) the relay is a Deployment reading the broker's URL from its Secret, let out
    to the broker's port; without, the events service is off and nothing of it is rendered."""
    stack = write_stack(tmp_path, "prod", with_events("external"))
    program = Program(str(stack), render.run(stack))
    container = program.one("Deployment", "events")["spec"]["template"]["spec"]["containers"][0]
    amqp = next(e for e in container["env"] if e["name"] == "EOLAKE_EVENTS_AMQP_URL")
    assert amqp["valueFrom"]["secretKeyRef"] == {"name": "eolake-amqp", "key": "amqp-url"}
    egress = program.one("NetworkPolicy", "events")["spec"]["egress"]
    assert any(port.get("port") == 5672 for rule in egress for port in rule.get("ports", []))
    assert "events" not in load_stack(write_stack(tmp_path, "prod", with_events(None))).enabled_services
    with pytest.raises(ValueError, match="embedded runs only locally"):
        load_stack(write_stack(tmp_path, "prod", with_events("embedded")))


def test_onprem_runs_the_relay_only_with_an_external_broker(tmp_path):
    platform = load_stack(write_stack(tmp_path, "onprem", with_events("external")))
    relay = next(u for u in units(platform, platform.onprem.app[0]) if u["name"] == "events")
    assert relay["secrets"] == ["amqp"] and relay["database"]  # the role writes EOLAKE_EVENTS_AMQP_URL
    assert relay["environment"]["EOLAKE_EVENTS_EXCHANGE"] == "eolake.events"
    off = load_stack(write_stack(tmp_path, "onprem", with_events(None)))
    assert "events" not in {u["name"] for u in units(off, off.onprem.app[0])}
