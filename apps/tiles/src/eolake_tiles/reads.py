"""Where the tiles' database connections come from: the primary, or a streaming replica (eolake_kit.replicas).

titiler-pgstac takes connections from `app.state.dbpool` wherever it needs one (in the request's thread, the
mosaic backend's included): that is a RoutedPool, which hands out the replica's connections in a request that may
read there (ReplicaRouting decides, once per request), the primary's everywhere else. A search registration writes
on the primary, and answers the primary's position: the writer's next tile requests carry it (cookie or header)
and read from the primary until the replica has replayed it, so a just-registered search is always found.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from psycopg_pool import ConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eolake_kit.replicas import PRIMARY_POSITION, REPLAYED, STATE, WROTE, ReplicaLag, counted
from eolake_tiles.manifest import MANIFEST

ON_REPLICA: ContextVar[bool] = ContextVar("eolake_tiles_on_replica", default=False)
TOKEN: ContextVar[int | None] = ContextVar("eolake_tiles_read_after", default=None)
SERVICE = MANIFEST.name


class RoutedPool:
    """The primary's pool, or the replica's in a request ReplicaRouting sent there: each connection of the replica
    handed out has replayed the request's read-after token (behind a pooler, two connections may reach two
    replicas), else the primary's serves."""

    def __init__(self, primary: ConnectionPool, replica: ConnectionPool | None = None) -> None:
        self.primary, self.replica = primary, replica

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Any]:
        if self.replica is not None and ON_REPLICA.get():
            with self.replica.connection(timeout) as conn:
                token = TOKEN.get()
                if token is None or conn.execute(REPLAYED).fetchone()[0] >= token:
                    yield conn
                    return
        with self.primary.connection(timeout) as conn:
            yield conn

    def close(self) -> None:
        self.primary.close()
        if self.replica is not None:
            self.replica.close()


def reads(scope: Scope) -> bool:
    """GET, HEAD, and the public reads sent over POST (statistics and images of a GeoJSON body)."""
    if scope["method"] in ("GET", "HEAD"):
        return True
    root, path = scope.get("root_path", ""), scope["path"]
    below = path[len(root) :] if root and path.startswith(root + "/") else path
    return MANIFEST.public_route(scope["method"], below) is not None


def fetched(pool: ConnectionPool, query: str, timeout: float) -> int:
    with pool.connection(timeout) as conn:
        return conn.execute(query).fetchone()[0]


class ReplicaRouting:
    """Per request: a read (`reads`) uses the replica while it is usable (RoutedPool checks the request's read-after
    token on each connection); anything else uses the primary, and a successful write answers the primary's
    position."""

    def __init__(self, app: ASGIApp, pools: RoutedPool, lag: ReplicaLag | None, timeout: float) -> None:
        self.app, self.pools, self.lag, self.timeout = app, pools, lag, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})
        if not reads(scope):
            return await self.app(scope, receive, self._answering_position(state, send))
        on_replica = self.lag is not None and self.lag.usable
        counted(SERVICE, "replica" if on_replica else "primary")
        routed, token = ON_REPLICA.set(on_replica), TOKEN.set(state.get(STATE))
        try:
            await self.app(scope, receive, send)
        finally:
            ON_REPLICA.reset(routed)
            TOKEN.reset(token)

    def _answering_position(self, state: dict, send: Send):
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                position = await asyncio.to_thread(fetched, self.pools.primary, PRIMARY_POSITION, self.timeout)
                state[WROTE] = position
            await send(message)

        return sending
