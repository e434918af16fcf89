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
SERVICE = MANIFEST.name


class RoutedPool:
    """The primary's pool, or the replica's in a request ReplicaRouting sent there."""

    def __init__(self, primary: ConnectionPool, replica: ConnectionPool | None = None) -> None:
        self.primary, self.replica = primary, replica

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Any]:
        pool = self.replica if self.replica is not None and ON_REPLICA.get() else self.primary
        with pool.connection(timeout) as conn:
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
    """Per request: a read (`reads`) uses the replica while it is usable and has replayed the request's read-after
    token; anything else uses the primary, and a successful write answers the primary's position."""

    def __init__(self, app: ASGIApp, pools: RoutedPool, lag: ReplicaLag | None, timeout: float) -> None:
        self.app, self.pools, self.lag, self.timeout = app, pools, lag, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})
        if not reads(scope):
            return await self.app(scope, receive, self._answering_position(state, send))
        on_replica = await self._replica_serves(state.get(STATE))
        counted(SERVICE, "replica" if on_replica else "primary")
        token = ON_REPLICA.set(on_replica)
        try:
            await self.app(scope, receive, send)
        finally:
            ON_REPLICA.reset(token)

    async def _replica_serves(self, token: int | None) -> bool:
        if self.lag is None or not self.lag.usable:
            return False
        if token is None:
            return True
        try:
            return await asyncio.to_thread(fetched, self.pools.replica, REPLAYED, self.timeout) >= token
        except Exception:  # noqa: BLE001 - a replica that cannot answer serves nothing
            self.lag.failed()
            return False

    def _answering_position(self, state: dict, send: Send):
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                position = await asyncio.to_thread(fetched, self.pools.primary, PRIMARY_POSITION, self.timeout)
                state[WROTE] = position
            await send(message)

        return sending
