"""The local gateway: one base URL, one path prefix per service, like the Kubernetes ingress and the on-prem proxy.

Paths are forwarded unchanged (services know their own prefix); the Host header is not forwarded, so services
build links only from their configured public URL.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from eolake_kit.logs import configure_logging
from eolake_kit.problems import problem

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length"}
# Set again by the gateway's own server.
RESPONSE_DROP = HOP_BY_HOP | {"date", "server"}
log = logging.getLogger("eolake.gateway")


def create_gateway(routes: dict[str, str], *, public_url: str, timeout: float = 60.0,
                   max_body_bytes: int = 64 * 1024 * 1024) -> Starlette:
    """`routes` maps a path prefix ("/stac", "/" for the web view) to the upstream base URL."""
    prefixes = sorted(routes, key=len, reverse=True)

    def upstream_for(path: str) -> str | None:
        for prefix in prefixes:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return routes[prefix]
        return None

    @asynccontextmanager
    async def lifespan(app: Starlette):
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as client:
            client.headers.clear()  # only what the caller sent: no Accept-Encoding it did not ask for
            app.state.client = client
            yield

    async def index(request: Request) -> Response:
        return JSONResponse({
            "title": "eolake",
            "services": {p: public_url.rstrip("/") + p for p in sorted(routes) if p != "/"},
        })

    async def proxy(request: Request) -> Response:
        path = request.url.path
        upstream = upstream_for(path)
        if upstream is None:
            if path == "/":
                return await index(request)
            return problem(404, f"no service is mounted at {path}")
        length = int(request.headers.get("content-length") or 0)
        if length > max_body_bytes:
            return problem(413, f"request body of {length} bytes exceeds the {max_body_bytes} byte limit")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        client_ip = request.client.host if request.client else ""
        headers.append(("x-forwarded-for", client_ip))
        client: httpx.AsyncClient = request.app.state.client
        upstream_request = client.build_request(
            request.method, upstream + path, params=request.url.query or None, headers=headers,
            content=request.stream() if length or "transfer-encoding" in request.headers else None,
        )
        try:
            response = await client.send(upstream_request, stream=True)
        except httpx.TimeoutException:
            return problem(504, f"{upstream_name(path, prefixes)} did not answer in time")
        except httpx.TransportError as exc:
            log.warning("upstream %s unreachable: %s", upstream, exc)
            return problem(502, f"{upstream_name(path, prefixes)} is unavailable")
        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in RESPONSE_DROP}
        return StreamingResponse(response.aiter_raw(), status_code=response.status_code, headers=out_headers,
                                 background=BackgroundTask(response.aclose))

    async def alive(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/-/healthz", alive), Route("/-/readyz", alive),
                             Route("/{path:path}", proxy, methods=methods)], lifespan=lifespan)


def upstream_name(path: str, prefixes: list[str]) -> str:
    for prefix in prefixes:
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return f"the service at {prefix}"
    return "the upstream service"


def main() -> None:
    import uvicorn

    configure_logging("gateway")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app = create_gateway(json.loads(os.environ["EOLAKE_GATEWAY_ROUTES"]),
                         public_url=os.environ["EOLAKE_GATEWAY_PUBLIC_URL"])
    uvicorn.run(app, host=os.environ.get("EOLAKE_GATEWAY_HOST", "127.0.0.1"),
                port=int(os.environ["EOLAKE_GATEWAY_PORT"]), log_config=None, server_header=False,
                proxy_headers=False, timeout_graceful_shutdown=20)


if __name__ == "__main__":
    main()
