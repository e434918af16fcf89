"""Serving staged files: which byte range, and one of an S3 object streamed in chunks (local files:
eolake_kit.zerocopy.FileSpanResponse)."""

from __future__ import annotations

import asyncio

from eolake_downloads import metrics
from eolake_downloads.settings import DownloadsSettings

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
