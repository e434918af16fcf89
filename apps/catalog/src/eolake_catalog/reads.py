"""Where the catalog's database connections come from: stac-fastapi-pgstac's connection getter, with a replica.

Writes use the primary's write pool, and the request then answers the primary's position (eolake_kit.replicas).
Reads use the replica while it is usable (ReplicaLag) and has replayed the request's read-after token, else the
primary's read pool; a request that writes (any method but GET and HEAD, apart from the manifest's public reads such
as POST /search) reads from the primary too: what it checks before writing is what it writes over.

A request may pin its read connection (`pinned`): the search cache reads the stamp of the collections and then,
on the same server, the answer, so an answer is never older than the stamp it is kept under, which two replicas
at different positions could otherwise give.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import asyncpg
from asyncpg import exceptions as pg_errors
from fastapi import Request
from stac_fastapi.pgstac.db import translate_pgstac_errors

from eolake_catalog.manifest import MANIFEST
from eolake_kit.replicas import PRIMARY_POSITION, REPLAYED, STATE, WROTE, ReplicaLag, counted

PIN = "read_connection"
PRIMARY_ONLY = "reads_from_primary"
LOST = (OSError, asyncio.TimeoutError, pg_errors.ConnectionDoesNotExistError, pg_errors.CannotConnectNowError)
ACQUIRE_SECONDS = 2  # a replica that takes longer to hand out a connection is treated as down for this read


class Connections:
    """The getter stac-fastapi-pgstac calls (`app.state.get_connection(request, "r" | "w")`)."""

    def __init__(self, replicas: asyncpg.Pool | None = None, lag: ReplicaLag | None = None) -> None:
        self.replicas, self.lag = replicas, lag

    @asynccontextmanager
    async def __call__(self, request: Request, readwrite: Literal["r", "w"] = "r") -> AsyncIterator[Any]:
        if readwrite == "w":
            async with request.app.state.writepool.acquire() as conn:
                with translate_pgstac_errors():
                    yield conn
                setattr(request.state, WROTE, await conn.fetchval(PRIMARY_POSITION))
            return
        if (pinned := getattr(request.state, PIN, None)) is not None:
            with translate_pgstac_errors():
                yield pinned
            return
        conn = await self._replica(request)
        if conn is None:
            counted(MANIFEST.name, "primary")
            async with request.app.state.readpool.acquire() as conn:
                with translate_pgstac_errors():
                    yield conn
            return
        counted(MANIFEST.name, "replica")
        try:
            with translate_pgstac_errors():
                yield conn
        except LOST:
            self.lag.failed()
            raise
        finally:
            await self.replicas.release(conn)

    @asynccontextmanager
    async def pinned(self, request: Request) -> AsyncIterator[Any]:
        """One read connection for the rest of the block: every read of the request inside it uses it."""
        async with self(request, "r") as conn:
            setattr(request.state, PIN, conn)
            try:
                yield conn
            finally:
                setattr(request.state, PIN, None)

    async def _replica(self, request: Request) -> Any | None:
        """A replica connection that may serve this read, or None: the primary's read pool serves it."""
        if self.lag is None or not self.lag.usable or getattr(request.state, PRIMARY_ONLY, False):
            return None
        if not reads_anywhere(request):
            return None
        try:
            conn = await self.replicas.acquire(timeout=ACQUIRE_SECONDS)
        except LOST:
            self.lag.failed()
            return None
        token = getattr(request.state, STATE, None)
        try:
            if token is None or await conn.fetchval(REPLAYED) >= token:
                return conn
        except LOST:
            self.lag.failed()
        await self.replicas.release(conn)
        setattr(request.state, PRIMARY_ONLY, True)  # the rest of the request reads where its first read did
        return None


def reads_anywhere(request: Request) -> bool:
    """A read request (GET, HEAD, or a public read sent over POST) may read from a replica; a write may not."""
    if request.method in ("GET", "HEAD"):
        return True
    route = request.scope.get("route")
    return MANIFEST.public_route(request.method, getattr(route, "path", "")) is not None
