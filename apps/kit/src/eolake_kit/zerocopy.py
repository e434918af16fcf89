"""Zero-copy file bodies: the ASGI "http.response.zerocopysend" extension on uvicorn's h11 protocol, and a response
that uses it when offered (FileSpanResponse).

uvicorn offers no way to send a file without reading it through Python. Here its request cycle learns one more
message: `{"type": "http.response.zerocopysend", "file": <binary file>, "offset": int, "count": int}` goes out with
the kernel's sendfile (the event loop's `sendfile`, native on asyncio's own loop; uvloop has none, so the extension
is offered only on loops that have it). h11 still frames the body: it is handed a placeholder as long as the span
(`send_with_data_passthrough` returns it untouched), so Content-Length is checked and chunked bodies get their
chunk lines.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Callable
from typing import Any

import h11
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import RequestResponseCycle

EXTENSION = "http.response.zerocopysend"
READ_CHUNK = 256 * 1024  # without zero-copy


class FileSpan:
    """`count` bytes of `file` from `offset`, as h11 sees them: only their length."""

    __slots__ = ("count", "file", "offset")

    def __init__(self, file: Any, offset: int, count: int):
        self.file, self.offset, self.count = file, offset, count

    def __len__(self) -> int:
        return self.count


class ZeroCopyCycle(RequestResponseCycle):
    """uvicorn's h11 request cycle that also sends file spans by sendfile."""

    async def send(self, message: Any) -> None:
        if message["type"] != EXTENSION:
            return await super().send(message)
        if not self.response_started or self.response_complete:
            raise RuntimeError(f"Unexpected ASGI message '{EXTENSION}' outside a response body.")
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if self.scope["method"] != "HEAD" and not await self._send_span(span_of(message)):
            return
        await super().send({"type": "http.response.body", "body": b"", "more_body": message.get("more_body", False)})

    async def _send_span(self, span: FileSpan) -> bool:
        """False when the client went away (or the file was shorter than said): the connection is closed, since its
        body cannot be completed."""
        if not span.count:
            return True
        loop = asyncio.get_running_loop()
        try:
            placeholder: Any = span  # h11 only asks its length
            pieces: list[Any] = self.conn.send_with_data_passthrough(h11.Data(data=placeholder)) or []
            for piece in pieces:
                if piece is not span:  # a chunk's size line
                    self.transport.write(piece)
                elif await loop.sendfile(self.transport, span.file, span.offset, span.count) != span.count:
                    raise OSError(f"the file ended before the {span.count} bytes announced")
        except (OSError, RuntimeError) as exc:  # RuntimeError: the transport was closing already
            self.logger.debug("zero-copy body not completed: %s", exc)
            self.disconnected = True
            self.transport.close()
            return False
        return True


def span_of(message: dict[str, Any]) -> FileSpan:
    file, offset = message["file"], message.get("offset") or 0
    count = message.get("count")
    if count is None:
        count = os.fstat(file.fileno()).st_size - offset
    return FileSpan(file, offset, count)


def offer_zero_copy(cycle: RequestResponseCycle, loop: asyncio.AbstractEventLoop) -> None:
    """Called as the cycle is made, before its application task first runs: it then sees the extension in its
    scope, and its `send` is ZeroCopyCycle's. Nothing is offered on a loop without a native sendfile."""
    if isinstance(loop, asyncio.BaseEventLoop):
        cycle.__class__ = ZeroCopyCycle
        cycle.scope.setdefault("extensions", {})[EXTENSION] = {}


class FileSpanResponse(StreamingResponse):
    """`length` bytes of the file at `path` from `start`: the kernel copies them to the socket when the server
    offers zero-copy sends, else they are read and streamed in chunks. `sent(n)` is told of the bytes handed on."""

    def __init__(
        self, path: str, start: int, length: int, *, sent: Callable[[int], None] = lambda n: None, **kwargs: Any
    ):
        self.reader = read_span(path, start, length, sent)
        super().__init__(self.reader, **kwargs)
        self.path, self.start, self.length, self.sent = path, start, length, sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if EXTENSION not in scope.get("extensions", {}):
            return await super().__call__(scope, receive, send)
        await self.reader.aclose()  # not started: nothing to undo
        f = await asyncio.to_thread(open, self.path, "rb")
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await send({"type": EXTENSION, "file": f, "offset": self.start, "count": self.length})
        finally:
            await asyncio.to_thread(f.close)
        self.sent(self.length)


async def read_span(path: str, start: int, length: int, sent: Callable[[int], None]) -> AsyncGenerator[bytes]:
    f = await asyncio.to_thread(open, path, "rb")
    try:
        await asyncio.to_thread(f.seek, start)
        left = length
        while left > 0:
            chunk = await asyncio.to_thread(f.read, min(READ_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            sent(len(chunk))
            yield chunk
    finally:
        await asyncio.to_thread(f.close)
