"""Reads from a streaming replica, writes to the primary, and a client's reads after its own write never stale.

A service with a read replica (READ_DATABASE_URL) sends a read there unless one of these holds, then to the primary:
- the replica is down, or replays further behind than `max_replica_lag_seconds` (ReplicaLag watches it);
- the request carries a read-after token (the `Eolake-Read-After` header, or the cookie of the same name a write
  set) that the replica has not replayed yet.

A request that wrote answers with the primary's WAL position after its write, as that header and as a cookie
(path /: the platform's one origin): a browser or any client that keeps cookies (httpx, requests sessions) reads its
own writes without doing anything; other clients send the header back. The cookie lives as long as a usable replica
may lag: once a token is that old, a replica that is not further behind has replayed past it.

Every service reads the token a request carries (the kit installs ReadAfterMiddleware) and sends it on to the
peers it calls on the request's behalf (eolake_kit.outbound, `read_after_to`): an order placed right after an
ingest finds the item, a federated search right after a write sees it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from http.cookies import SimpleCookie

from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eolake_kit.problems import problem
from eolake_kit.settings import PostgresUrl

HEADER = "Eolake-Read-After"
PROBES = {"/healthz", "/readyz", "/metrics"}  # they read nothing a client wrote: a token there is not looked at
COOKIE = "eolake_read_after"
STATE = "read_after"  # request.state: the token the request carried (an int), absent without one
FORWARDED: ContextVar[str | None] = ContextVar("eolake_read_after", default=None)  # the same, for outbound calls
WROTE = "wrote_at"  # request.state: the primary's WAL position after the request's last write
LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
DEFAULT_MAX_LAG = 5.0  # seconds (the spec's database.max_replica_lag_seconds)
CHECK_SECONDS = 1.0  # how often each worker asks the primary and the replica where they are
# What the primary and a replica answer: a position as a number (pg_lsn minus 0/0 is its byte offset).
PRIMARY_POSITION = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"
REPLAYED = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint"
log = logging.getLogger("eolake_kit.replicas")

READS = Counter("eolake_database_reads", "Read requests by the database server they read from", ["service", "server"])
USABLE = Gauge(
    "eolake_database_replica_usable",
    "1 while the read replica answers and is within its lag bound",
    ["service"],
    multiprocess_mode="livemin",
)


class ReplicaSettings(BaseModel):
    """The settings of a service that can read from a replica (its manifest's `replica_reads`)."""

    read_database_url: PostgresUrl | None = Field(
        None, description="a streaming replica for reads (postgresql://…); unset: every read goes to the primary"
    )
    max_replica_lag_seconds: float = Field(
        DEFAULT_MAX_LAG, gt=0, le=300, description="reads go to the primary while the replica is further behind"
    )


def lsn_number(text: str) -> int:
    """A WAL position as PostgreSQL writes it (`16/B374D848`) as a number; ValueError when it is not one."""
    found = LSN.match(text.strip())
    if not found:
        raise ValueError(f"{HEADER} must be a WAL position such as 0/16B3748, not {text[:40]!r}")
    return (int(found[1], 16) << 32) | int(found[2], 16)


def lsn_text(number: int) -> str:
    return f"{number >> 32:X}/{number & 0xFFFFFFFF:X}"


class ReplicaLag:
    """Whether the replica may serve reads: it answers, and it has replayed what the primary had written
    `max_lag` seconds ago. The primary's position is sampled every check; the replica's replayed position is
    compared with the sample from `max_lag` seconds before (the oldest one kept, just after a start)."""

    def __init__(
        self,
        service: str,
        max_lag: float,
        primary_position: Callable[[], Awaitable[int]],
        replayed: Callable[[], Awaitable[int]],
    ) -> None:
        self.service, self.max_lag = service, max_lag
        self.primary_position, self.replayed = primary_position, replayed
        self.usable = False
        self._samples: deque[tuple[float, int]] = deque()

    async def check(self) -> bool:
        now = time.monotonic()
        try:
            self._samples.append((now, await self.primary_position()))
        except Exception as exc:  # noqa: BLE001 - the primary's trouble is its own readiness check's
            log.debug("primary position unknown: %s", exc)
        try:
            replayed = await self.replayed()
        except Exception as exc:  # noqa: BLE001 - any failure means: not usable
            (log.warning if self.usable else log.debug)("read replica unusable: %s", exc)  # once, not every second
            return self._set(False)
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.max_lag:
            self._samples.popleft()  # the oldest kept is the newest at least max_lag old
        return self._set(not self._samples or replayed >= self._samples[0][1])

    def failed(self) -> None:
        """A read could not reach the replica: the primary serves until the next check finds it back."""
        self._set(False)

    def _set(self, usable: bool) -> bool:
        if usable != self.usable:
            log.info("read replica %s", "usable" if usable else "not usable: reads go to the primary")
        self.usable = usable
        USABLE.labels(self.service).set(int(usable))
        return usable

    async def watch(self) -> None:
        """Check forever (a task of the service's lifespan, which checks once before serving)."""
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            await self.check()


def token_seconds(max_lag: float) -> int:
    """How long a write's token matters: past that, a replica that is usable (ReplicaLag) has replayed it."""
    return math.ceil(max_lag + 2 * CHECK_SECONDS)


def counted(service: str, server: str) -> None:
    READS.labels(service, server).inc()


class ReadAfterMiddleware:
    """Reads the token a request carries (header first, else the cookie) into request.state and FORWARDED; a
    malformed header is a 400. A request that wrote (request.state.wrote_at) answers its position, as the header and
    the cookie."""

    def __init__(self, app: ASGIApp, https: bool, max_lag: float) -> None:
        self.app = app
        self.cookie = f"Path=/; Max-Age={token_seconds(max_lag)}; HttpOnly; SameSite=Lax"
        self.cookie += "; Secure" if https else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _service_path(scope) in PROBES:
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})
        try:
            token = carried(scope)
        except ValueError as exc:
            return await problem(400, str(exc))(scope, receive, send)
        if token is not None:
            state[STATE] = token
        forwarded = FORWARDED.set(lsn_text(token) if token is not None else None)

        async def send_position(message: Message) -> None:
            if message["type"] == "http.response.start" and (wrote := state.get(WROTE)) is not None:
                position = lsn_text(wrote).encode()
                message["headers"] = [
                    *message.get("headers", []),
                    (HEADER.lower().encode(), position),
                    (b"set-cookie", f"{COOKIE}={position.decode()}; {self.cookie}".encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_position)
        finally:
            FORWARDED.reset(forwarded)


def _service_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def carried(scope: Scope) -> int | None:
    header = cookie = None
    for name, value in scope["headers"]:
        if name == HEADER.lower().encode():
            header = value.decode("latin-1")
        elif name == b"cookie":
            jar = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001 - a cookie header we cannot parse carries no token of ours
                continue
            if COOKIE in jar:
                cookie = jar[COOKIE].value
    if header is not None:
        return lsn_number(header)
    if cookie is not None:
        try:
            return lsn_number(cookie)
        except ValueError:  # a cookie is the browser's to keep: a spoilt one is ignored, not an error
            return None
    return None
