"""Run a service with uvicorn: JSON logs, graceful shutdown, multi-process metrics when there are workers, and the
connection-level bounds of the spec's limits (slow clients, open connections, header size)."""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
from typing import TYPE_CHECKING, Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from eolake_kit.logs import configure_logging
from eolake_kit.zerocopy import offer_zero_copy
from eolake_spec import Limits

if TYPE_CHECKING:  # the gateway uses connection_options: no service settings (nor FastAPI) behind it
    from eolake_kit.settings import ServiceSettings

KEEP_ALIVE_SECONDS = 5
MAX_HEAD_BYTES = 256 * 1024
TOO_SLOW = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def header_deadline_protocol(seconds: float, zero_copy: bool = False) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline on each request's head: a client that sends its request line and
    headers slower than `seconds` (a byte at a time, "slowloris") gets a 408 and its connection closed. uvicorn
    itself only times out idle keep-alive connections. (Slow bodies: eolake_kit.bounds, per piece of body.)
    `zero_copy`: requests are offered file bodies by sendfile (eolake_kit.zerocopy)."""

    class HeaderDeadline(H11Protocol):
        deadline = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            super().data_received(data)
            if self.cycle is not cycle:  # a complete head was parsed: a request is under way
                self._disarm()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if zero_copy and self.cycle is not cycle:
                offer_zero_copy(self.cycle, self.loop)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self.deadline = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _too_slow(self) -> None:
            self.deadline = None
            if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
                return
            if self.conn.our_state is h11.IDLE:  # between requests: say why (not after an answer to a slow body)
                self.transport.write(TOO_SLOW)
            self.transport.close()

    return HeaderDeadline


def connection_options(limits: Limits, zero_copy: bool = False) -> dict[str, Any]:
    """uvicorn options bounding connections: slow heads, idle keep-alives, open connections, head size; with
    `zero_copy`, asyncio's own loop (uvloop has no sendfile) and file bodies by sendfile."""
    return {
        "http": header_deadline_protocol(limits.header_seconds, zero_copy),
        "loop": "asyncio" if zero_copy else "auto",
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "limit_concurrency": limits.connections,
        # h11 refuses a larger head outright (a plain 400); below it, the bounds middleware answers 414/431 naming
        # the bound. Slow heads are dropped at the deadline, so a large buffer is not held for long.
        "h11_max_incomplete_event_size": max(
            MAX_HEAD_BYTES, limits.path_bytes + limits.query_bytes + limits.header_bytes + 1024
        ),
    }


def serve(factory: str, settings: ServiceSettings, *, zero_copy: bool = False) -> None:
    """`factory` is the import path of the service's `create_app`, called in each worker process; `zero_copy`: it
    may send files by sendfile (eolake_kit.zerocopy)."""
    configure_logging(settings.service_name, settings.log_level)
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"eolake-{settings.service_name}-metrics-")
    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=math.ceil(settings.graceful_timeout),
        lifespan="on",
        **connection_options(settings.limits, zero_copy),
    )
