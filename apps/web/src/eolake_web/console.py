"""The operations console's proxy: admins read Prometheus, Alertmanager and the trace store through the web view.

Read-only and narrow: only GET, only the API paths the console draws from, only the query parameters those take,
with bounded queries (expression length, range selectors, time range, points) and a bounded answer. The observers'
internal addresses come from the deployment target (settings.observers); the browser never reaches them itself.
"""

from __future__ import annotations

import json
import re
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from starlette.responses import Response

from eolake_kit.auth import Principal, require_role
from eolake_kit.outbound import async_client

# What the console reads, by observer: the API path below its URL → the query parameters passed on.
ALLOWED: dict[str, dict[str, frozenset[str]]] = {
    "prometheus": {
        "api/v1/query": frozenset({"query", "time"}),
        "api/v1/query_range": frozenset({"query", "start", "end", "step"}),
        "api/v1/alerts": frozenset(),
        "api/v1/rules": frozenset({"type"}),
    },
    "alertmanager": {
        "api/v2/alerts": frozenset({"active", "silenced", "inhibited", "unprocessed"}),
        "api/v2/silences": frozenset(),
    },
    "traces": {
        "api/traces": frozenset({"limit", "min_duration_ms", "errors", "service"}),
    },
}
TITLES = {"prometheus": "Prometheus", "alertmanager": "Alertmanager", "traces": "the trace store"}
TRACE_ID = re.compile(r"[0-9a-f]{32}")
MAX_QUERY_CHARS = 2000
MAX_SELECTOR_SECONDS = 31 * 86400  # a range selector or subquery may look back over the 30-day SLO period
MAX_RANGE_SECONDS = 24 * 3600  # query_range: a day at most
MAX_POINTS = 1100  # per series of a query_range (Prometheus's own limit is 11,000)
MAX_ANSWER_BYTES = 8 << 20
UPSTREAM_TIMEOUT = 15.0
PROMQL_TIMEOUT = "10s"
DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
# The durations inside [...] of a PromQL expression: range selectors `[5m]` and subqueries `[1d:5m]`.
SELECTOR = re.compile(r"\[([^\]]*)\]")


def seconds(duration: str) -> float:
    """A Prometheus duration (1h30m, 5m, 30s) in seconds; ValueError for anything else."""
    parts = DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(duration)
    return sum(int(n) * UNIT_SECONDS[u] for n, u in parts)


def timestamp(value: str, name: str) -> float:
    """A Prometheus time parameter: Unix seconds or RFC 3339."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise HTTPException(400, f"{name}: {value!r} is neither Unix seconds nor an RFC 3339 time") from None


def check_expression(query: str | None) -> None:
    if not query:
        raise HTTPException(400, "query: a PromQL expression is required")
    if len(query) > MAX_QUERY_CHARS:
        raise HTTPException(400, f"query: longer than {MAX_QUERY_CHARS} characters")
    for selector in SELECTOR.findall(query):
        for part in selector.split(":"):
            if not part.strip():
                continue
            try:
                looked = seconds(part.strip())
            except ValueError:
                raise HTTPException(400, f"query: [{selector}] is not a duration") from None
            if looked > MAX_SELECTOR_SECONDS:
                raise HTTPException(400, f"query: [{selector}] looks back further than 31 days")


def check_range(params: dict[str, str]) -> None:
    missing = [name for name in ("start", "end", "step") if not params.get(name)]
    if missing:
        raise HTTPException(400, f"query_range needs {', '.join(missing)}")
    start, end = timestamp(params["start"], "start"), timestamp(params["end"], "end")
    try:
        step = float(params["step"])
    except ValueError:
        try:
            step = seconds(params["step"])
        except ValueError:
            raise HTTPException(400, f"step: {params['step']!r} is not seconds or a duration") from None
    if end < start:
        raise HTTPException(400, "end is before start")
    if end - start > MAX_RANGE_SECONDS:
        raise HTTPException(400, f"the range is longer than {MAX_RANGE_SECONDS // 3600} hours")
    if step <= 0 or (end - start) / step > MAX_POINTS:
        raise HTTPException(400, f"step: at most {MAX_POINTS} points per series (step ≥ range / {MAX_POINTS})")


def forwarded_params(observer: str, path: str, request: Request) -> dict[str, str]:
    """The query parameters passed on, checked; anything the console does not send is refused."""
    allowed = ALLOWED[observer][path]
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise HTTPException(400, f"unexpected parameters for {path}: {', '.join(unknown)}")
    if any(len(request.query_params.getlist(name)) > 1 for name in request.query_params):
        raise HTTPException(400, "each parameter at most once")
    params = dict(request.query_params)
    if observer == "prometheus" and path in ("api/v1/query", "api/v1/query_range"):
        check_expression(params.get("query"))
        if path == "api/v1/query_range":
            check_range(params)
        elif "time" in params:
            timestamp(params["time"], "time")
        params["timeout"] = PROMQL_TIMEOUT
    return params


def upstream_error(observer: str, status: int, body: bytes) -> HTTPException:
    """An upstream refusal as ours: Prometheus explains a bad query in `error`; the rest is its status."""
    detail = f"{TITLES[observer]} answered {status}"
    try:
        answer = json.loads(body)
        detail = f"{TITLES[observer]}: {answer.get('error') or answer.get('detail') or answer}"
    except (ValueError, AttributeError):
        pass
    status = status if status in (400, 404, 422) else 502
    return HTTPException(400 if status == 422 else status, detail[:500])


async def fetch(request: Request, observer: str, path: str, params: dict[str, str]) -> Response:
    base = request.app.state.console_observers.get(observer)
    if base is None:
        raise HTTPException(503, f"{TITLES[observer]} is not deployed with this platform (no observers.{observer})")
    client: httpx.AsyncClient = request.app.state.console_client
    try:
        async with client.stream("GET", f"{base}/{path}", params=params) as response:
            if int(response.headers.get("content-length") or 0) > MAX_ANSWER_BYTES:
                raise HTTPException(502, f"{TITLES[observer]}'s answer is larger than {MAX_ANSWER_BYTES} bytes")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise HTTPException(502, f"{TITLES[observer]}'s answer is larger than {MAX_ANSWER_BYTES} bytes")
    except httpx.TimeoutException:
        raise HTTPException(504, f"{TITLES[observer]} did not answer within {UPSTREAM_TIMEOUT:.0f} s") from None
    except httpx.TransportError as exc:
        raise HTTPException(502, f"{TITLES[observer]} cannot be reached: {exc.__class__.__name__}") from None
    if response.status_code >= 400:
        raise upstream_error(observer, response.status_code, bytes(body))
    return Response(bytes(body), media_type="application/json", headers={"Cache-Control": "private, no-store"})


Admin = Annotated[Principal, Depends(require_role("admin"))]


def console_router() -> APIRouter:
    router = APIRouter(prefix="/console/api")

    @router.get("/prometheus/{path:path}", include_in_schema=False)
    async def prometheus(path: str, request: Request, who: Admin) -> Response:
        return await proxied(request, "prometheus", path)

    @router.get("/alertmanager/{path:path}", include_in_schema=False)
    async def alertmanager(path: str, request: Request, who: Admin) -> Response:
        return await proxied(request, "alertmanager", path)

    @router.get("/traces", include_in_schema=False)
    async def traces(request: Request, who: Admin) -> Response:
        return await proxied(request, "traces", "api/traces")

    @router.get("/traces/{trace_id}", include_in_schema=False)
    async def one_trace(trace_id: str, request: Request, who: Admin) -> Response:
        if not TRACE_ID.fullmatch(trace_id):
            raise HTTPException(400, "a trace id is 32 lowercase hexadecimal digits")
        if request.query_params:
            raise HTTPException(400, "a trace takes no parameters")
        return await fetch(request, "traces", f"api/traces/{trace_id}", {})

    return router


async def proxied(request: Request, observer: str, path: str) -> Response:
    if path not in ALLOWED[observer]:
        raise HTTPException(
            404, f"the console reads no {observer} API path {path!r} (known: {', '.join(sorted(ALLOWED[observer]))})"
        )
    return await fetch(request, observer, path, forwarded_params(observer, path, request))


def install_console(app: FastAPI, observers: dict[str, str]) -> None:
    """The proxy's routes and its HTTP client, closed with the app."""
    app.state.console_observers = observers
    app.state.console_client = async_client(observers.values(), timeout=UPSTREAM_TIMEOUT, follow_redirects=False)
    app.include_router(console_router())
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a):
        async with inner(a) as state:
            yield state
        await a.state.console_client.aclose()

    app.router.lifespan_context = lifespan
