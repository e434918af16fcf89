"""ETag on the catalog's successful GET answers, and 304 Not Modified when the client already holds that answer.

The tag is a digest of the body, so it changes exactly when the answer does (after a write, through the search
cache's stamps); a client revalidating a page it holds gets 304 and no body. Weak (`W/`), because the compression
outside this middleware changes the bytes but not the meaning.
"""

from __future__ import annotations

import hashlib

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class EtagMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        held = Headers(scope=scope).get("if-none-match")
        start: Message | None = None
        chunks: list[bytes] = []

        async def buffered(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] != 200:
                    start = None
                    await send(message)
                    return
                start = message
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            await _answer(send, start, b"".join(chunks), held)

        await self.app(scope, receive, buffered)


async def _answer(send: Send, start: Message, body: bytes, held: str | None) -> None:
    tag = 'W/"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
    headers = MutableHeaders(raw=list(start["headers"]))
    headers["etag"] = tag
    if held and _matches(held, tag):
        for name in ("content-length", "content-type"):
            if name in headers:
                del headers[name]
        await send({"type": "http.response.start", "status": 304, "headers": headers.raw})
        await send({"type": "http.response.body", "body": b""})
        return
    await send({**start, "headers": headers.raw})
    await send({"type": "http.response.body", "body": body})


def _matches(held: str, tag: str) -> bool:
    """If-None-Match compares weakly (RFC 9110 13.1.2): W/"x" and "x" are the same tag; `*` matches any."""
    opaque = tag.removeprefix("W/")
    return any(
        candidate.strip() == "*" or candidate.strip().removeprefix("W/") == opaque for candidate in held.split(",")
    )
