"""The local gateway: one base URL, one path prefix per service, like the Kubernetes ingress and the on-prem proxy.

Paths are forwarded unchanged, as received (raw: an escaped %2F stays escaped), and services know their own prefix;
the Host header is not forwarded, so services build links only from their configured public URL. Sizes, times and
connections are bounded here too (the edge limits: the widest of the services'); each service inspects its own
requests.
"""

from __future__ import annotations

import json
import logging
import os
import re
from contextlib import asynccontextmanager

import httpx
from opentelemetry import propagate
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from eolake_kit.bounds import BoundsMiddleware
from eolake_kit.health import metrics_response
from eolake_kit.logs import configure_logging, request_id
from eolake_kit.observe import ObserveMiddleware
from eolake_kit.problems import problem
from eolake_kit.server import connection_options
from eolake_kit.tracing import configure_tracing
from eolake_spec import Limits

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length"}
# Set again by the gateway's own server. An upstream Content-Length is kept: the body is relayed raw (byte for
# byte), and download clients need the length for progress and resume.
RESPONSE_DROP = (HOP_BY_HOP - {"content-length"}) | {"date", "server", "x-request-id"}
# The gateway's request id, trace context and client address replace whatever the client sent: it is the edge, so
# the address it saw is the only one a service may believe (the rate limits key on it).
REQUEST_DROP = HOP_BY_HOP | {"x-request-id", "traceparent", "tracestate", "x-forwarded-for"}
log = logging.getLogger("eolake.gateway")
CONTROL = re.compile(r"[\x00-\x1f\x7f]|%[01][0-9a-f]|%7f", re.I)  # raw or percent-escaped
DEFAULT_LIMITS = Limits(body_bytes=64 * 1024 * 1024, request_seconds=70)


def create_gateway(routes: dict[str, str], *, public_url: str, timeout: float = 60.0,
                   limits: Limits = DEFAULT_LIMITS, otlp_endpoint: str | None = None) -> Starlette:
    """`routes` maps a path prefix ("/stac", "/" for the web view) to the upstream base URL; `timeout` bounds each
    upstream read, `limits` what a client may send and how long the answer may take to start."""
    configure_tracing("gateway", otlp_endpoint)
    prefixes = sorted(routes, key=len, reverse=True)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as client:
            client.headers.clear()  # only what the caller sent: no Accept-Encoding it did not ask for
            HTTPXClientInstrumentor.instrument_client(client)  # a CLIENT span per upstream call, its traceparent sent
            app.state.client = client
            yield

    async def index(request: Request) -> Response:
        return JSONResponse({
            "title": "eolake",
            "services": {p: public_url.rstrip("/") + p for p in sorted(routes) if p != "/"},
        })

    async def not_mounted(request: Request) -> Response:
        if request.url.path == "/":
            return await index(request)
        return problem(404, f"no service is mounted at {request.url.path}")

    def proxy_to(prefix: str):
        async def endpoint(request: Request) -> Response:
            return await proxy(request, prefix, routes[prefix])

        return endpoint

    async def proxy(request: Request, prefix: str, upstream: str) -> Response:
        path = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
        if CONTROL.search(path):
            return problem(400, "the request path contains a control character")
        length = int(request.headers.get("content-length") or 0)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in REQUEST_DROP]
        client_ip = request.client.host if request.client else ""
        headers += [("x-forwarded-for", client_ip), ("x-request-id", request_id.get() or "")]
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        headers += list(carrier.items())
        client: httpx.AsyncClient = request.app.state.client
        query = request.scope.get("query_string", b"").decode("latin-1")
        try:
            upstream_request = client.build_request(
                request.method, upstream + path + (f"?{query}" if query else ""), headers=headers,
                content=request.stream() if length or "transfer-encoding" in request.headers else None,
            )
        except httpx.InvalidURL:
            return problem(400, "the request path or query is not a valid URL")
        try:
            response = await client.send(upstream_request, stream=True)
        except httpx.TimeoutException:
            return problem(504, f"the service at {prefix} did not answer in time")
        except httpx.TransportError as exc:
            log.warning("upstream %s unreachable: %s", upstream, exc)
            return problem(502, f"the service at {prefix} is unavailable")
        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in RESPONSE_DROP}
        return StreamingResponse(response.aiter_raw(), status_code=response.status_code, headers=out_headers,
                                 background=BackgroundTask(response.aclose))

    async def alive(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def metrics(request: Request) -> Response:
        return metrics_response()

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    table = [Route("/-/healthz", alive), Route("/-/readyz", alive), Route("/-/metrics", metrics)]
    for prefix in prefixes:  # longest first; the web view's "/" catches the rest
        base = prefix.rstrip("/")
        table += [Route(base + "/{path:path}", proxy_to(prefix), methods=methods)]
        if base:
            table.append(Route(base, proxy_to(prefix), methods=methods))
    table.append(Route("/{path:path}", not_mounted, methods=methods))
    return Starlette(routes=table, lifespan=lifespan,
                     middleware=[Middleware(ObserveMiddleware, service="gateway"),
                                 Middleware(BoundsMiddleware, limits=limits, inspect=False)])


def main() -> None:
    import uvicorn

    configure_logging("gateway")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    limits = Limits.model_validate_json(os.environ["EOLAKE_GATEWAY_LIMITS"]) \
        if "EOLAKE_GATEWAY_LIMITS" in os.environ else DEFAULT_LIMITS
    app = create_gateway(json.loads(os.environ["EOLAKE_GATEWAY_ROUTES"]),
                         public_url=os.environ["EOLAKE_GATEWAY_PUBLIC_URL"], limits=limits,
                         timeout=limits.request_seconds, otlp_endpoint=os.environ.get("EOLAKE_GATEWAY_OTLP_ENDPOINT"))
    uvicorn.run(app, host=os.environ.get("EOLAKE_GATEWAY_HOST", "127.0.0.1"),
                port=int(os.environ["EOLAKE_GATEWAY_PORT"]), log_config=None, server_header=False,
                proxy_headers=False, timeout_graceful_shutdown=20, **connection_options(limits))


if __name__ == "__main__":
    main()
