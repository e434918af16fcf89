"""Every outgoing HTTP request of a service goes through one client that reaches only configured destinations.

A destination is a URL prefix (scheme, host, port and path): a peer service's internal address, a search provider's
root, an allow-listed storage host. Each request, redirects included (httpx sends every hop through the transport),
is checked before a connection is opened; anything else raises `DestinationRefused`, a transport error, so callers
treat it like an unreachable upstream. The client propagates the W3C trace context of the current span.

An upstream's answer is bounded too (`AnswerTooLarge`, also a transport error): a provider or peer that answers
without end cannot fill the service's memory. The bounded client asks for answers without content coding and
refuses a coded one, since a few megabytes of gzip can inflate to gigabytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from eolake_kit import replicas

DEFAULT_PORTS = {"http": 80, "https": 443}
ANSWER_BYTES = 32 << 20  # the largest answer an async client reads: STAC pages and API documents are far smaller


class DestinationRefused(httpx.TransportError):
    """The request's URL is not below any configured destination."""


class AnswerTooLarge(httpx.TransportError):
    """The upstream's answer is larger than the client's bound, or content-coded against the client's request."""


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int
    path: str  # prefix without a trailing slash; "" admits every path on the origin

    @classmethod
    def parse(cls, url: str) -> Destination:
        parsed = httpx.URL(url)
        if parsed.scheme not in DEFAULT_PORTS or not parsed.host:
            raise ValueError(f"{url!r} is not an http(s) URL with a host")
        if parsed.userinfo or parsed.query or parsed.fragment:
            raise ValueError(f"{url!r}: a destination has no credentials, query or fragment")
        return cls(parsed.scheme, parsed.host.lower(), _port(parsed), parsed.path.rstrip("/"))

    def admits(self, url: httpx.URL) -> bool:
        if (url.scheme, url.host.lower(), _port(url)) != (self.scheme, self.host, self.port):
            return False
        path = url.path
        return not self.path or path == self.path or path.startswith(self.path + "/")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


def _port(url: httpx.URL) -> int:
    return url.port or DEFAULT_PORTS.get(url.scheme, 0)


class Egress:
    """The destinations one service may call."""

    def __init__(self, destinations: Iterable[str]):
        self.destinations = tuple(dict.fromkeys(Destination.parse(d) for d in destinations))

    def admits(self, url: httpx.URL | str) -> bool:
        url = httpx.URL(url) if isinstance(url, str) else url
        if url.userinfo or any(segment in (".", "..") for segment in url.path.split("/")):
            return False
        return any(d.admits(url) for d in self.destinations)

    def check(self, request: httpx.Request) -> None:
        if not self.admits(request.url):
            raise DestinationRefused(
                f"{request.url.scheme}://{request.url.host}{request.url.path} is not a configured destination",
                request=request,
            )


class _BoundedAnswer(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, request: httpx.Request, max_bytes: int):
        self.inner, self.request, self.max_bytes = inner, request, max_bytes

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self.inner:
            received += len(chunk)
            if received > self.max_bytes:
                raise _too_large(self.request, self.max_bytes)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


def _too_large(request: httpx.Request, max_bytes: int) -> AnswerTooLarge:
    return AnswerTooLarge(f"the answer exceeds {max_bytes} bytes", request=request)  # no address: callers show it


class _GuardedAsync(httpx.AsyncBaseTransport):
    def __init__(
        self, egress: Egress, inner: httpx.AsyncBaseTransport, max_answer_bytes: int | None, read_after_to: Egress
    ):
        self.egress, self.inner, self.max_answer_bytes = egress, inner, max_answer_bytes
        self.read_after_to = read_after_to

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.egress.check(request)
        if (token := replicas.FORWARDED.get()) and self.read_after_to.admits(request.url):
            request.headers.setdefault(replicas.HEADER, token)  # the caller's own writes, seen by the peer too
        response = await self.inner.handle_async_request(request)
        if self.max_answer_bytes is None:
            return response
        declared = response.headers.get("content-length", "")
        coded = response.headers.get("content-encoding", "identity").strip().lower() != "identity"
        too_large = request.method != "HEAD" and declared.isdigit() and int(declared) > self.max_answer_bytes
        if coded or too_large:
            await response.aclose()
            if coded:
                raise AnswerTooLarge("the answer is content-coded though none was asked for", request=request)
            raise _too_large(request, self.max_answer_bytes)
        assert isinstance(response.stream, httpx.AsyncByteStream)  # an async transport's answer
        response.stream = _BoundedAnswer(response.stream, request, self.max_answer_bytes)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Guarded(httpx.BaseTransport):
    def __init__(self, egress: Egress, inner: httpx.BaseTransport):
        self.egress, self.inner = egress, inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.egress.check(request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def async_client(
    destinations: Iterable[str] | Egress,
    *,
    limits: httpx.Limits | None = None,
    max_answer_bytes: int | None = ANSWER_BYTES,
    read_after_to: Iterable[str] = (),
    **kwargs: Any,
) -> httpx.AsyncClient:
    """An httpx.AsyncClient restricted to `destinations`, reading answers of at most `max_answer_bytes` (None: no
    bound, for file transfers), with trace propagation; the platform's peers among them (`read_after_to`) also get
    the read-after token of the request being served (eolake_kit.replicas), never an outside provider."""
    egress = destinations if isinstance(destinations, Egress) else Egress(destinations)
    inner = httpx.AsyncHTTPTransport(limits=limits or httpx.Limits(max_connections=100))
    if max_answer_bytes is not None:
        kwargs["headers"] = {"Accept-Encoding": "identity", **dict(kwargs.get("headers") or {})}
    transport = _GuardedAsync(egress, inner, max_answer_bytes, Egress(read_after_to))
    client = httpx.AsyncClient(transport=transport, **kwargs)
    HTTPXClientInstrumentor.instrument_client(client)
    return client


def client(destinations: Iterable[str] | Egress, **kwargs: Any) -> httpx.Client:
    """The synchronous twin of `async_client` (worker processes)."""
    egress = destinations if isinstance(destinations, Egress) else Egress(destinations)
    out = httpx.Client(transport=_Guarded(egress, httpx.HTTPTransport()), **kwargs)
    HTTPXClientInstrumentor.instrument_client(out)
    return out
