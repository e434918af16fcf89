"""The local gateway: one base URL, one path prefix per service, like the Kubernetes ingress and the on-prem proxy.

Paths are forwarded unchanged, as received (raw: an escaped %2F stays escaped), and services know their own prefix;
the Host header is not forwarded, so services build links only from their configured public URL. Sizes, times and
connections are bounded here too (the edge limits: the widest of the services'); each service inspects its own
requests.

A prefix may have several instances (processes of the same service): requests go to them in turn. A request that
could not reach an instance (connection refused) goes to the next one; a read (GET, HEAD, and the reads sent as POST
that the manifests declare) also when the instance dropped the connection or answered 502. The supervisor rewrites
the routes file as instances come and go: an instance taken out gets no new request and finishes those it has
(draining) before it is stopped.

Staged downloads are sent by the gateway itself, by sendfile, when it is given the storage it shares with the
download service (`sendfile_roots`): it asks for that (X-Sendfile-Type: X-Sendfile), the service authorises the
request and answers with its headers and the file's path (X-Sendfile) instead of the bytes, and the gateway sends
that file's span (Content-Range, else the whole file). A file is one copy by the kernel instead of three hops
through Python.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import logging
import os
import re
import time
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from opentelemetry import propagate
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from eolake.embedded.state import ROUTES_RELOAD_SECONDS
from eolake_kit.bounds import BoundsMiddleware
from eolake_kit.headers import SecurityHeadersMiddleware
from eolake_kit.logs import configure_logging, request_id
from eolake_kit.observe import ObserveMiddleware, metrics_response
from eolake_kit.problems import problem
from eolake_kit.server import connection_options
from eolake_kit.tracing import configure_tracing
from eolake_kit.zerocopy import FileSpanResponse
from eolake_spec import Limits

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "x-sendfile-type",  # set by the gateway alone: a client must not make a service name its files
}
# Set again by the gateway's own server. An upstream Content-Length is kept: the body is relayed raw (byte for
# byte), and download clients need the length for progress and resume.
RESPONSE_DROP = (HOP_BY_HOP - {"content-length"}) | {"date", "server", "x-request-id", "x-sendfile"}
# The gateway's request id, trace context and client address replace whatever the client sent: it is the edge, so
# the address it saw is the only one a service may believe (the rate limits key on it).
REQUEST_DROP = HOP_BY_HOP | {"x-request-id", "traceparent", "tracestate", "x-forwarded-for"}
log = logging.getLogger("eolake.gateway")
CONTROL = re.compile(r"[\x00-\x1f\x7f]|%[01][0-9a-f]|%7f", re.I)  # raw or percent-escaped
DEFAULT_LIMITS = Limits(body_bytes=64 * 1024 * 1024, request_seconds=70)
RELOAD_SECONDS = ROUTES_RELOAD_SECONDS
SUSPECT_SECONDS = 5.0  # an instance that refused a connection is tried last for this long
READS = {"GET", "HEAD", "OPTIONS"}
UNAVAILABLE_RETRY_SECONDS = "2"


class Upstreams:
    """The instances behind each prefix, in turn; reloaded from `file` (JSON: prefix → [base URL, ...]) when it
    changes."""

    def __init__(self, routes: dict[str, list[str]], file: Path | None = None):
        self.sets = {prefix: list(urls) for prefix, urls in routes.items()}
        self.file, self.looked = file, 0.0
        self.stamp: tuple[int, int] | None = None
        self.turns = {prefix: itertools.count() for prefix in routes}
        self.suspects: dict[str, float] = {}
        self.refresh()

    def refresh(self) -> None:
        now = time.monotonic()
        if self.file is None or now - self.looked < RELOAD_SECONDS:
            return
        self.looked = now
        try:
            stat = self.file.stat()
            if (stat.st_mtime_ns, stat.st_size) == self.stamp:
                return
            routes = json.loads(self.file.read_text())
        except (OSError, ValueError) as exc:  # being replaced: the next look finds it whole (written atomically)
            log.warning("routes file not read: %s", exc)
            return
        self.stamp = (stat.st_mtime_ns, stat.st_size)
        self.sets.update({prefix: list(urls) for prefix, urls in routes.items() if prefix in self.sets})

    def candidates(self, prefix: str) -> list[str]:
        """This prefix's instances, starting with the next in turn; those that failed lately come last."""
        self.refresh()
        urls = self.sets.get(prefix, [])
        if not urls:
            return []
        start = next(self.turns[prefix]) % len(urls)
        turn = urls[start:] + urls[:start]
        now = time.monotonic()
        return sorted(turn, key=lambda url: self.suspects.get(url, 0) > now)

    def failed(self, url: str) -> None:
        self.suspects[url] = time.monotonic() + SUSPECT_SECONDS

    def missing(self) -> list[str]:
        self.refresh()
        return [prefix for prefix, urls in self.sets.items() if not urls]


def create_gateway(
    routes: dict[str, str | list[str]],
    *,
    public_url: str,
    timeout: float = 60.0,
    limits: Limits = DEFAULT_LIMITS,
    otlp_endpoint: str | None = None,
    routes_file: Path | None = None,
    posted_reads: dict[str, list[str]] | None = None,
    trace_sample_ratio: float = 1.0,
    sendfile_roots: list[Path] | None = None,
) -> Starlette:
    """`routes` maps a path prefix ("/stac", "/" for the web view) to the upstream base URL (or the URLs of its
    instances), `routes_file` the same, kept up to date by the supervisor; `posted_reads` by prefix, the paths below
    it (`*` any characters) whose POST is a read, retried like a GET; `timeout` bounds each upstream read, `limits`
    what a client may send and how long the answer may take to start; `sendfile_roots`: the storage shared with
    the download service, whose files the gateway sends itself."""
    configure_tracing("gateway", otlp_endpoint, trace_sample_ratio)
    upstreams = Upstreams({p: [u] if isinstance(u, str) else u for p, u in routes.items()}, routes_file)
    gateway = Gateway(
        upstreams, public_url=public_url, posted_reads=posted_reads or {}, sendfile_roots=sendfile_roots or []
    )
    return Starlette(
        routes=gateway.table(),
        lifespan=_client_lifespan(timeout),
        exception_handlers={404: gateway.unrouted},
        middleware=[
            # Its own answers (a refused path, a body past the bound, an upstream down) carry them as the services'
            # do; the services' answers keep theirs (only what is absent is added).
            Middleware(SecurityHeadersMiddleware, https=public_url.startswith("https://")),
            Middleware(ObserveMiddleware, service="gateway"),
            Middleware(BoundsMiddleware, limits=limits, inspect=False),
        ],
    )


def _client_lifespan(timeout: float):
    @asynccontextmanager
    async def lifespan(app: Starlette):
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as client:
            client.headers.clear()  # only what the caller sent: no Accept-Encoding it did not ask for
            HTTPXClientInstrumentor.instrument_client(client)  # a CLIENT span per upstream call, its traceparent sent
            app.state.client = client
            yield

    return lifespan


def _raw_path(request: Request) -> str:
    return (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")


def _upstream_headers(request: Request, sends_files: bool) -> list[tuple[str, str]]:
    """What the client sent, less the hop-by-hop headers and what the edge sets itself: the client address it saw,
    its request id, the trace context, and whether it sends staged files itself."""
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in REQUEST_DROP]
    client_ip = request.client.host if request.client else ""
    headers += [("x-forwarded-for", client_ip), ("x-request-id", request_id.get() or "")]
    if sends_files:
        headers.append(("x-sendfile-type", "X-Sendfile"))
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return headers + list(carrier.items())


class Gateway:
    """The routes of the gateway: its own probes and metrics, then each prefix (longest first) proxied to the
    instances behind it."""

    METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

    def __init__(
        self,
        upstreams: Upstreams,
        *,
        public_url: str,
        posted_reads: dict[str, list[str]],
        sendfile_roots: list[Path],
    ):
        self.upstreams, self.public_url, self.posted_reads = upstreams, public_url, posted_reads
        self.sendfile_roots = [Path(os.path.realpath(root)) for root in sendfile_roots]
        self.prefixes = sorted(upstreams.sets, key=len, reverse=True)

    def table(self) -> list[Route]:
        table = [Route("/-/healthz", self.alive), Route("/-/readyz", self.ready), Route("/-/metrics", self.metrics)]
        for prefix in self.prefixes:  # longest first; the web view's "/" catches the rest
            base = prefix.rstrip("/")
            table.append(Route(base + "/{path:path}", self._proxy_to(prefix), methods=self.METHODS))
            if base:
                table.append(Route(base, self._proxy_to(prefix), methods=self.METHODS))
        table.append(Route("/{path:path}", self.not_mounted, methods=self.METHODS))
        return table

    def is_read(self, request: Request, prefix: str) -> bool:
        if request.method in READS:
            return True
        below = request.url.path[len(prefix.rstrip("/")) :]
        return request.method == "POST" and any(
            fnmatch.fnmatchcase(below, p) for p in self.posted_reads.get(prefix, ())
        )

    async def index(self, request: Request) -> Response:
        return JSONResponse(
            {
                "title": "eolake",
                "services": {p: self.public_url.rstrip("/") + p for p in sorted(self.prefixes) if p != "/"},
            }
        )

    async def not_mounted(self, request: Request) -> Response:
        if request.url.path == "/":
            return await self.index(request)
        return problem(404, f"no service is mounted at {request.url.path}")

    def _proxy_to(self, prefix: str):
        async def endpoint(request: Request) -> Response:
            return await self.proxy(request, prefix)

        return endpoint

    async def proxy(self, request: Request, prefix: str) -> Response:
        path = _raw_path(request)
        if CONTROL.search(path):
            return problem(400, "the request path contains a control character")
        instances = self.upstreams.candidates(prefix)
        if not instances:
            return problem(
                503,
                f"no instance of the service at {prefix} is ready",
                headers={"Retry-After": UNAVAILABLE_RETRY_SECONDS},
            )
        headers = _upstream_headers(request, bool(self.sendfile_roots))
        query = request.scope.get("query_string", b"").decode("latin-1")
        target = path + (f"?{query}" if query else "")
        has_body = bool(int(request.headers.get("content-length") or 0)) or "transfer-encoding" in request.headers
        read = self.is_read(request, prefix)
        # a read's body (small: a search) is kept, to send again; any other body streams through, once
        body = (await request.body() if read else request.stream()) if has_body else None
        for attempt, upstream in enumerate(instances, start=1):
            last = attempt == len(instances)
            answer = await self.forward(request, prefix, upstream, target, headers, body, retry=read and not last)
            if answer is not None:
                return answer
            self.upstreams.failed(upstream)  # refused, so nothing was sent (a streamed body neither); or a read
        return problem(502, f"the service at {prefix} is unavailable")

    async def forward(
        self, request: Request, prefix: str, upstream: str, target: str, headers, body, retry: bool
    ) -> Response | None:
        """The instance's answer, or None when the request may go to another instance: the connection was refused
        (nothing was sent), or a read's connection dropped or answered 502."""
        client: httpx.AsyncClient = request.app.state.client
        try:
            upstream_request = client.build_request(request.method, upstream + target, headers=headers, content=body)
        except httpx.InvalidURL:
            return problem(400, "the request path or query is not a valid URL")
        try:
            response = await client.send(upstream_request, stream=True)
        except httpx.TimeoutException:
            return problem(504, f"the service at {prefix} did not answer in time")
        except httpx.ConnectError as exc:
            log.warning("upstream %s unreachable: %s", upstream, exc)
            return None
        except httpx.TransportError as exc:
            log.warning("upstream %s dropped the connection: %s", upstream, exc)
            return None if retry else problem(502, f"the service at {prefix} is unavailable")
        if response.status_code == 502 and retry:
            await response.aclose()
            return None
        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in RESPONSE_DROP}
        if (named := response.headers.get("x-sendfile")) is not None:
            await response.aclose()  # an empty body: the file is named instead
            return self.staged_file(prefix, named, response, out_headers)
        return StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            headers=out_headers,
            background=BackgroundTask(response.aclose),
        )

    def staged_file(self, prefix: str, named: str, response: httpx.Response, headers: dict[str, str]) -> Response:
        """The span of the file a service named (after it authorised the request), sent from the shared storage."""
        path = Path(os.path.realpath(named))
        if not any(path.is_relative_to(root) for root in self.sendfile_roots):
            log.error("the service at %s named a file outside the shared storage: %s", prefix, named)
            return problem(502, f"the service at {prefix} answered with a file the gateway does not serve")
        try:
            start, length = file_span(path, response.status_code, response.headers.get("content-range"))
        except (OSError, ValueError) as exc:  # gone since (expired), or a span the gateway cannot read
            log.warning("file %s named by the service at %s not sent: %s", named, prefix, exc)
            return problem(502, f"the service at {prefix} named a file the gateway could not send")
        headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        headers["content-length"] = str(length)
        return FileSpanResponse(str(path), start, length, status_code=response.status_code, headers=headers)

    async def alive(self, request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(self, request: Request) -> Response:
        if missing := self.upstreams.missing():
            return problem(503, f"no instance ready behind {', '.join(missing)}")
        return JSONResponse({"status": "ready", "instances": {p: len(u) for p, u in self.upstreams.sets.items()}})

    async def metrics(self, request: Request) -> Response:
        return metrics_response()

    async def unrouted(self, request: Request, exc: Exception) -> Response:
        # Starlette's path patterns do not match a line break: such a path reaches no route at all.
        if CONTROL.search(_raw_path(request)):
            return problem(400, "the request path contains a control character")
        return problem(404, "nothing is served at this path")


def file_span(path: Path, status: int, content_range: str | None) -> tuple[int, int]:
    """(start, length) of the named file to send: the range of a 206 (bytes first-last/size), else all of it."""
    size = path.stat().st_size
    if status != 206:
        return 0, size
    unit, _, spec = (content_range or "").partition(" ")
    first, _, last = spec.partition("/")[0].partition("-")
    start, end = int(first), int(last)
    if unit != "bytes" or not 0 <= start <= end < size:
        raise ValueError(f"range {content_range!r} is not in a file of {size} bytes")
    return start, end - start + 1


def main() -> None:
    import uvicorn

    configure_logging("gateway")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    limits = (
        Limits.model_validate_json(os.environ["EOLAKE_GATEWAY_LIMITS"])
        if "EOLAKE_GATEWAY_LIMITS" in os.environ
        else DEFAULT_LIMITS
    )
    routes_file = Path(os.environ["EOLAKE_GATEWAY_ROUTES_FILE"]) if "EOLAKE_GATEWAY_ROUTES_FILE" in os.environ else None
    routes = json.loads(routes_file.read_text() if routes_file else os.environ["EOLAKE_GATEWAY_ROUTES"])
    sendfile_roots = json.loads(os.environ.get("EOLAKE_GATEWAY_SENDFILE_ROOTS", "[]"))
    app = create_gateway(
        routes,
        public_url=os.environ["EOLAKE_GATEWAY_PUBLIC_URL"],
        limits=limits,
        timeout=limits.request_seconds,
        otlp_endpoint=os.environ.get("EOLAKE_GATEWAY_OTLP_ENDPOINT"),
        routes_file=routes_file,
        posted_reads=json.loads(os.environ.get("EOLAKE_GATEWAY_POSTED_READS", "{}")),
        trace_sample_ratio=float(os.environ.get("EOLAKE_GATEWAY_TRACE_SAMPLE_RATIO", "1")),
        sendfile_roots=[Path(p) for p in sendfile_roots],
    )
    uvicorn.run(
        app,
        host=os.environ.get("EOLAKE_GATEWAY_HOST", "127.0.0.1"),
        port=int(os.environ["EOLAKE_GATEWAY_PORT"]),
        log_config=None,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=20,
        **connection_options(limits, zero_copy=bool(sendfile_roots)),
    )


if __name__ == "__main__":
    main()
