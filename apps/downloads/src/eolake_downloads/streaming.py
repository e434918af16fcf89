"""Serving staged files: one byte range of a local file (by sendfile where the server offers it, else in chunks) or
of an S3 object (in chunks)."""

from __future__ import annotations

import asyncio

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from eolake_downloads import metrics
from eolake_downloads.settings import DownloadsSettings
from eolake_kit.zerocopy import EXTENSION as ZERO_COPY

STREAM_CHUNK = 256 * 1024


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """(start, end inclusive) for one satisfiable range; None: serve everything; "bad": 416."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # other units or several ranges: the whole file (RFC 9110 lets a server ignore Range)
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return "bad"
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                return "bad"
            return (max(0, size - n), size - 1) if size else "bad"
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return "bad"
    if start < 0 or start >= size or end < start:
        return "bad"
    return start, min(end, size - 1)


async def local_body(location: str, start: int, length: int):
    def read(f, n):
        return f.read(n)

    f = await asyncio.to_thread(open, location, "rb")
    try:
        await asyncio.to_thread(f.seek, start)
        left = length
        while left > 0:
            chunk = await asyncio.to_thread(read, f, min(STREAM_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            metrics.BYTES_SERVED.labels(metrics.SERVICE).inc(len(chunk))
            yield chunk
    finally:
        await asyncio.to_thread(f.close)


class LocalFileResponse(StreamingResponse):
    """`length` bytes of a local file from `start`: the kernel copies them to the socket when the server offers
    zero-copy sends (eolake_kit.zerocopy), else they are read and streamed in chunks."""

    def __init__(self, location: str, start: int, length: int, **kwargs):
        super().__init__(local_body(location, start, length), **kwargs)
        self.location, self.start, self.length = location, start, length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if ZERO_COPY not in scope.get("extensions", {}):
            return await super().__call__(scope, receive, send)
        await self.body_iterator.aclose()  # not started: nothing to undo
        f = await asyncio.to_thread(open, self.location, "rb")
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await send({"type": ZERO_COPY, "file": f, "offset": self.start, "count": self.length})
        finally:
            await asyncio.to_thread(f.close)
        metrics.BYTES_SERVED.labels(metrics.SERVICE).inc(self.length)


async def s3_body(settings: DownloadsSettings, key: str, start: int, end: int, length: int):
    from eolake_downloads.sources import s3_client

    if length == 0:
        return
    client = s3_client(settings, settings.s3_endpoint)
    obj = await asyncio.to_thread(client.get_object, Bucket=settings.s3_bucket, Key=key, Range=f"bytes={start}-{end}")
    body = obj["Body"]
    try:
        while chunk := await asyncio.to_thread(body.read, STREAM_CHUNK):
            metrics.BYTES_SERVED.labels(metrics.SERVICE).inc(len(chunk))
            yield chunk
    finally:
        body.close()
