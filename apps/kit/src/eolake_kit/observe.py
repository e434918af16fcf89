"""One ASGI middleware for what every request needs: a request id, a server span, RED metrics, an access log."""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eolake_kit.logs import current_service, request_id, trace_id
from eolake_kit.problems import problem

if TYPE_CHECKING:
    from eolake_kit.auth import Principal

# Buckets include the SLO thresholds (250 ms search, 500 ms tiles, 1 s and 2.5 s heavier calls).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REQUESTS = Counter("eolake_http_requests", "HTTP requests served", ["service", "route", "method", "status_class"])
LATENCY = Histogram(
    "eolake_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "route", "method"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "eolake_http_requests_in_flight", "HTTP requests being served", ["service"], multiprocess_mode="livesum"
)
PROBES = {"/healthz", "/readyz", "/metrics"}
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
access_log = logging.getLogger("eolake.access")
tracer = trace.get_tracer("eolake_kit")


def route_template(scope: Scope) -> str:
    """The matched route's template (low cardinality), never the raw path."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


@dataclass(frozen=True)
class Finished:
    """A served request, as hooks after the response see it (usage analytics)."""

    service: str
    method: str
    route: str  # the route template, or "unmatched"
    path: str  # the public path, prefix included
    query: str
    status: int
    seconds: float
    headers: dict[str, str]  # request headers, lower-case names
    principal: Principal | None  # the caller when the route authenticated the caller
    request_id: str


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, service: str, on_finished: Callable[[Finished], None] | None = None):
        self.app, self.service, self.on_finished = app, service, on_finished

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        rid = incoming if VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        rid_token = request_id.set(rid)
        service_token = current_service.set(self.service)
        state = scope.setdefault("state", {})  # shared with request.state downstream: the principal lands here
        status, started = 500, False
        start = time.perf_counter()
        IN_FLIGHT.labels(self.service).inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        method = scope["method"]
        with tracer.start_as_current_span(
            f"{method} {scope['path']}", context=propagate.extract(headers), kind=SpanKind.SERVER
        ) as span:
            tid_token = trace_id.set(format(span.get_span_context().trace_id, "032x"))
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                # Handled here, inside the request's context, so the 500 carries its request id and trace.
                access_log.error("unhandled error", exc_info=exc)
                span.record_exception(exc)
                if started:
                    raise
                await problem(500, "internal error; quote the request id when reporting it")(
                    scope, receive, send_with_id
                )
            finally:
                elapsed = time.perf_counter() - start
                route = route_template(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                IN_FLIGHT.labels(self.service).dec()
                REQUESTS.labels(self.service, route, method, f"{status // 100}xx").inc()
                LATENCY.labels(self.service, route, method).observe(elapsed)
                level = logging.DEBUG if route in PROBES and status < 400 else logging.INFO
                access_log.log(
                    level,
                    "%s %s %s",
                    method,
                    route,
                    status,
                    extra={
                        "method": method,
                        "route": route,
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "client": (scope.get("client") or ("", 0))[0],
                    },
                )
                if self.on_finished is not None:
                    self._finished(
                        Finished(
                            self.service,
                            method,
                            route,
                            scope["path"],
                            scope.get("query_string", b"").decode("latin-1"),
                            status,
                            elapsed,
                            headers,
                            state.get("principal"),
                            rid,
                        )
                    )
                trace_id.reset(tid_token)
                current_service.reset(service_token)
                request_id.reset(rid_token)

    def _finished(self, finished: Finished) -> None:
        assert self.on_finished is not None
        try:
            self.on_finished(finished)
        except Exception:  # a hook never fails a request that has been served
            access_log.debug("on_finished hook failed", exc_info=True)


def metrics_response() -> Response:
    """The process' metrics (all its workers' when there are several) in Prometheus' text format."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
