"""Cache headers, an ETag and a small in-process cache for rendered images; a time budget per request."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import OrderedDict

from eolake_kit import problem

OPERATIONS = ("/healthz", "/readyz", "/metrics")


class RenderedCache:
    """Least recently used rendered images, bounded in bytes and age."""

    def __init__(self, max_bytes: int, ttl: float):
        self.max_bytes, self.ttl = max_bytes, ttl
        self.entries: OrderedDict[tuple, tuple[float, bytes, list, str]] = OrderedDict()
        self.size = 0
        self.lock = threading.Lock()

    def get(self, key: tuple):
        with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                return None
            if time.monotonic() - entry[0] > self.ttl:
                self._drop(key)
                return None
            self.entries.move_to_end(key)
            return entry

    def put(self, key: tuple, body: bytes, headers: list, etag: str) -> None:
        if not self.max_bytes or len(body) > self.max_bytes // 8:
            return
        with self.lock:
            if key in self.entries:
                self._drop(key)
            self.entries[key] = (time.monotonic(), body, headers, etag)
            self.size += len(body)
            while self.size > self.max_bytes:
                self._drop(next(iter(self.entries)))

    def _drop(self, key: tuple) -> None:
        self.size -= len(self.entries.pop(key)[1])


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


class ImageMiddleware:
    """Images (tiles, previews, parts) get `Cache-Control: public, max-age=N` and a strong ETag (hash of the
    bytes); If-None-Match → 304. Every request but the operational ones has a time budget: past it the client
    gets a 504 problem instead of waiting (the worker thread finishes its read and is dropped)."""

    def __init__(self, app, *, max_age: int, cache: RenderedCache, timeout: float):
        self.app, self.max_age, self.cache, self.timeout = app, max_age, cache, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].endswith(OPERATIONS):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        inm = headers.get("if-none-match")
        key = (scope["path"], scope.get("query_string", b""))
        cacheable = method in ("GET", "HEAD")
        if cacheable and (hit := self.cache.get(key)) is not None:
            _, body, resp_headers, etag = hit
            await self._send_image(send, 200, resp_headers, body, etag, inm, method)
            return

        state = {"sent": False, "image": False, "start": None, "chunks": []}

        async def capture(message):
            if message["type"] == "http.response.start":
                ctype = dict(message.get("headers", [])).get(b"content-type", b"")
                if cacheable and message["status"] == 200 and ctype.startswith(b"image/"):
                    state["image"], state["start"] = True, message
                    return
                state["sent"] = True
                await send(message)
            elif state["image"]:
                state["chunks"].append(message.get("body", b""))
                if not message.get("more_body"):
                    body = b"".join(state["chunks"])
                    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                    keep = [
                        (k, v)
                        for k, v in state["start"].get("headers", [])
                        if k.lower() not in (b"content-length", b"cache-control", b"etag")
                    ]
                    self.cache.put(key, body, keep, etag)
                    state["sent"] = True
                    await self._send_image(send, 200, keep, body, etag, inm, method)
            else:
                await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, capture), self.timeout)
        except TimeoutError:
            if state["sent"]:
                raise
            response = problem(
                504,
                f"the request took longer than its {self.timeout:g} s budget; zoom in or narrow the mosaic",
                title="Gateway Timeout",
            )
            await response(scope, receive, send)

    async def _send_image(self, send, status, headers, body, etag, inm, method):
        extra = [(b"etag", etag.encode()), (b"cache-control", f"public, max-age={self.max_age}".encode())]
        if _etag_matches(inm, etag):
            keep = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-encoding")]
            await send({"type": "http.response.start", "status": 304, "headers": keep + extra})
            await send({"type": "http.response.body", "body": b""})
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": headers + extra + [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
