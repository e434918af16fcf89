"""The outbox relay: publishes the outbox's events to the broker, in id order, and deletes each row once the broker
confirmed it (publisher confirms). At least once: a relay stopped between the confirm and the delete publishes that
event again at its next start, with the same id. One relay publishes at a time (a PostgreSQL advisory lock held by its
session): the others wait, ready to take over when its session ends. A broker that refused the connection is
watched while the relay waits to try again: when it listens (it was starting, as beside `eolake up`), the relay
connects at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aio_pika
import psycopg
from prometheus_client import Counter, Gauge

from eolake_events.schema import CHANNEL
from eolake_events.settings import EventsSettings
from eolake_events.topology import CONTENT_TYPE

log = logging.getLogger("eolake.events")
logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # a refused connection is the relay's one warning, not theirs
SERVICE = "events"
RELAY_LOCK = 0x6576656E7473  # "events": the advisory lock of the publishing relay
MEASURE_SECONDS = 1.0
LISTEN_PROBE_SECONDS = 0.2  # how often a broker that refused is looked at while the relay waits

DEPTH = Gauge(
    "eolake_events_outbox_depth",
    "events committed and not yet confirmed by the broker",
    ["service"],
    multiprocess_mode="max",
)
OLDEST = Gauge(
    "eolake_events_outbox_oldest_seconds",
    "age of the oldest event not yet confirmed",
    ["service"],
    multiprocess_mode="max",
)
PUBLISHED = Counter("eolake_events_published", "events the broker confirmed", ["service", "source"])
FAILURES = Counter(
    "eolake_events_failures", "relay sessions ended by a failure (broker or database), retried", ["service", "reason"]
)
LEADING = Gauge(
    "eolake_events_relay_leading", "1 while this process is the one publishing", ["service"], multiprocess_mode="max"
)


class Relay:
    def __init__(self, settings: EventsSettings):
        self.settings = settings
        self.broker: aio_pika.abc.AbstractConnection | None = None
        self.leading = False
        self.failure: str | None = None  # why the last session ended, until one connects again

    async def connect_database(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(
            self.settings.dsn, autocommit=True, options=self.settings.postgres_options()
        )

    async def run(self) -> None:
        """Relay sessions, one after the other, until cancelled. After a failure the next waits, twice as long each
        time the broker could not even be reached."""
        delay = self.settings.retry_seconds
        while True:
            refused = False
            try:
                await self.session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker or the database went away: the outbox keeps everything
                reason = "broker" if isinstance(exc, aio_pika.exceptions.AMQPException | OSError) else "database"
                FAILURES.labels(SERVICE, reason).inc()
                self.failure = f"{type(exc).__name__}: {exc}"[:300]
                refused = isinstance(exc.__cause__ or exc, ConnectionRefusedError)
                delay = self.settings.retry_seconds if self.broker else min(delay * 2, self.settings.retry_max_seconds)
                log.warning("relay session ended: %s; next in %.1f s", self.failure, delay)
            finally:
                await self._disconnect()
            await (self.until_broker_listens(delay) if refused else asyncio.sleep(delay))

    async def until_broker_listens(self, seconds: float) -> None:
        """`seconds`, or less: until the broker's address accepts a connection."""
        url = urlsplit(self.settings.amqp_url.get_secret_value())
        host, port = url.hostname or "localhost", url.port or (5671 if url.scheme == "amqps" else 5672)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(LISTEN_PROBE_SECONDS, left))
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), LISTEN_PROBE_SECONDS)
            except (OSError, TimeoutError):
                continue
            writer.close()
            return

    async def session(self) -> None:
        async with await self.connect_database() as conn:
            await conn.execute("UPDATE eolake_events.switch SET enabled = true, changed = now() WHERE NOT enabled")
            await self._lead(conn)
            await conn.execute(f"LISTEN {CHANNEL}")
            self.broker = await aio_pika.connect(
                self.settings.amqp_url.get_secret_value(), timeout=self.settings.confirm_seconds
            )
            channel = await self.broker.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(self.settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            self.failure = None
            log.info("relaying to exchange %s", self.settings.exchange)
            while True:
                if not await self.drain(conn, exchange):
                    await self._wait(conn)

    async def _lead(self, conn: psycopg.AsyncConnection) -> None:
        """Until this session holds the relay lock (another relay's session ending frees it)."""
        while not (await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK,))).fetchone())[0]:
            await asyncio.sleep(self.settings.poll_seconds)
        self.leading = True
        LEADING.labels(SERVICE).set(1)

    async def drain(self, conn: psycopg.AsyncConnection, exchange: aio_pika.abc.AbstractExchange) -> int:
        """Publish the oldest rows, each deleted once confirmed; returns how many."""
        rows = await (
            await conn.execute(
                "SELECT id, service, routing_key, event FROM eolake_events.outbox ORDER BY id LIMIT %s",
                (self.settings.batch_size,),
            )
        ).fetchall()
        for row_id, service, routing_key, event in rows:
            await exchange.publish(
                self.message(service, event), routing_key=routing_key, timeout=self.settings.confirm_seconds
            )  # returns once the broker confirmed
            await conn.execute("DELETE FROM eolake_events.outbox WHERE id = %s", (row_id,))
            PUBLISHED.labels(SERVICE, service).inc()
        return len(rows)

    def message(self, service: str, event: dict) -> aio_pika.Message:
        event = {**event, "source": self.settings.source(service)}
        return aio_pika.Message(
            json.dumps(event, separators=(",", ":")).encode(),
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event["id"],
            type=event["type"],
            timestamp=datetime.now(UTC),
            app_id="eolake",
        )

    async def _wait(self, conn: psycopg.AsyncConnection) -> None:
        """Until a commit wrote events (NOTIFY) or poll_seconds passed; a broker gone meanwhile ends the session."""
        async for _ in conn.notifies(timeout=self.settings.poll_seconds, stop_after=1):
            pass
        if self.broker is None or self.broker.is_closed:
            raise ConnectionError("the broker connection closed")

    async def _disconnect(self) -> None:
        self.leading = False
        LEADING.labels(SERVICE).set(0)
        broker, self.broker = self.broker, None
        if broker is not None:
            with contextlib.suppress(Exception):
                await broker.close()

    async def measure(self) -> None:
        """The outbox's depth and age, every MEASURE_SECONDS, whatever the broker does."""
        while True:
            try:
                async with await self.connect_database() as conn:
                    while True:
                        depth, oldest = await (
                            await conn.execute(
                                "SELECT count(*), coalesce(extract(epoch FROM now() - min(created)), 0) "
                                "FROM eolake_events.outbox"
                            )
                        ).fetchone()
                        DEPTH.labels(SERVICE).set(depth)
                        OLDEST.labels(SERVICE).set(float(oldest))
                        await asyncio.sleep(MEASURE_SECONDS)
            except psycopg.Error as exc:
                log.warning("outbox not measured: %s", exc)
                await asyncio.sleep(MEASURE_SECONDS)

    async def database_answers(self) -> None:
        async with await self.connect_database() as conn:
            await conn.execute("SELECT 1 FROM eolake_events.switch")

    async def publishing(self) -> None:
        """Readiness: the relay publishes (or stands by behind the one that does); raises why not."""
        if self.failure:
            raise ConnectionError(self.failure)
        if self.leading and (self.broker is None or self.broker.is_closed):
            raise ConnectionError("not connected to the broker")
