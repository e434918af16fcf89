"""Bounds on every request, checked before anything recursive or expensive runs (the spec's `limits`).

One ASGI middleware (`BoundsMiddleware`, put on every service by `install_kit`) refuses, with problem+json naming
the bound: a long path or query string (414), too many or too large headers (431), a body past its size while it
streams in, chunked or not (413), a body that stalls (408), JSON nested too deep or too large, CQL2 filters past
their length, depth or node count, geometries with too many positions or invalid coordinates, a `q` with too many
terms (400); and answers 504 when the response has not started within the request's time budget (the work is
cancelled). The checks themselves (`check_*`) are iterative: no input recurses in them, whatever its nesting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eolake_kit.problems import problem
from eolake_spec import Limits

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("eolake.bounds")
JSON_TYPES = re.compile(r"^application/([a-z0-9.+-]*\+)?json\b|^application/geo\+json\b", re.I)
JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
BRACKETS = re.compile(r"[\[\]{}]")
CQL2_STRING = re.compile(r"'(?:[^']|'')*'", re.S)
CQL2_PARENS = re.compile(r"[()]")
CQL2_TOKEN = re.compile(r"[A-Za-z_][\w.:]*|[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\S")
LIMIT_PARAM = re.compile(rb"(?:^|(?<=&))limit=(\d+)")
GEOMETRY_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}


class OutOfBounds(ValueError):
    """A request past one of its bounds: `status` and a detail naming the bound."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail

    def response(self) -> Response:
        # The connection stays open: the server drains what is left of a refused body (closing now would reset
        # the connection before the client read the answer); a client that keeps sending meets the head deadline.
        return problem(self.status, self.detail)


# --- the checks: pure functions, iterative whatever the input ---------------------------------------------------


def check_json_text(raw: str | bytes, limits: Limits, what: str = "JSON") -> object:
    """`raw` parsed, after its bracket nesting was measured without recursion (json.loads recurses)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    depth = deepest = 0
    for match in BRACKETS.finditer(JSON_STRING.sub('""', text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > limits.json_depth:
            raise OutOfBounds(400, f"{what} nesting exceeds {limits.json_depth} levels")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise OutOfBounds(400, f"{what} is not valid JSON: {str(exc)[:200]}") from None
    count_nodes(value, limits.json_nodes, what)
    return value


def walk(value: object) -> Iterator[tuple[object, int]]:
    """Every value inside `value` with its nesting depth, depth first, without recursion."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def count_nodes(value: object, most: int, what: str) -> None:
    for count, _ in enumerate(walk(value), 1):
        if count > most:
            raise OutOfBounds(400, f"{what} holds more than {most} values")


def check_cql2_text(text: str, limits: Limits) -> None:
    if len(text) > limits.cql2_length:
        raise OutOfBounds(400, f"CQL2 filter exceeds {limits.cql2_length} characters")
    bare = CQL2_STRING.sub("''", text)
    depth = 0
    for match in CQL2_PARENS.finditer(bare):
        depth += 1 if match.group() == "(" else -1
        if depth > limits.cql2_depth:
            raise OutOfBounds(400, f"CQL2 filter nesting exceeds {limits.cql2_depth} levels")
    for count, _ in enumerate(CQL2_TOKEN.finditer(bare), 1):
        if count > limits.cql2_nodes:
            raise OutOfBounds(400, f"CQL2 filter exceeds {limits.cql2_nodes} tokens")


def check_cql2_json(expression: object, limits: Limits) -> None:
    """Depth counts nested operations ({"op": …}); nodes count every JSON value."""
    depths: list[int] = []  # operation depth of the enclosing operations, as the walk descends
    for count, (node, depth) in enumerate(walk(expression), 1):
        if count > limits.cql2_nodes:
            raise OutOfBounds(400, f"CQL2 filter exceeds {limits.cql2_nodes} values")
        while depths and depths[-1] >= depth:
            depths.pop()
        if isinstance(node, dict) and "op" in node:
            depths.append(depth)
            if len(depths) > limits.cql2_depth:
                raise OutOfBounds(400, f"CQL2 filter nesting exceeds {limits.cql2_depth} levels")


def check_cql2(value: object, lang: str | None, limits: Limits) -> None:
    """A filter as it arrives: CQL2 text, CQL2 JSON as a string (query parameter) or already parsed (body)."""
    if isinstance(value, str):
        if len(value) > limits.cql2_length:
            raise OutOfBounds(400, f"CQL2 filter exceeds {limits.cql2_length} characters")
        if lang == "cql2-json":
            value = check_json_text(value, limits, "CQL2 filter")
        else:
            return check_cql2_text(value, limits)
    if len(json.dumps(value)) > limits.cql2_length:
        raise OutOfBounds(400, f"CQL2 filter exceeds {limits.cql2_length} characters")
    check_cql2_json(value, limits)


def check_geometry(geometry: object, limits: Limits, *, lon_lat: bool = False) -> None:
    """Positions of a GeoJSON geometry counted (and, in longitude/latitude, range-checked) without recursion."""
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    if not isinstance(kind, str) or kind not in GEOMETRY_TYPES | {"GeometryCollection"}:  # ({} is unhashable)
        return
    positions = 0
    for node, _ in walk(geometry):
        if isinstance(node, list) and node and all(isinstance(c, int | float) for c in node):
            positions += 1
            if positions > limits.geometry_vertices:
                raise OutOfBounds(400, f"geometry exceeds {limits.geometry_vertices} positions")
            if lon_lat and not (len(node) >= 2 and -180 <= node[0] <= 180 and -90 <= node[1] <= 90):
                raise OutOfBounds(
                    400, f"geometry position {node[:3]} is not a longitude/latitude within [-180, 180] × [-90, 90]"
                )


def check_bbox(value: object) -> None:
    box = value.split(",") if isinstance(value, str) else value
    if not isinstance(box, Sequence):
        raise OutOfBounds(400, "bbox must be 4 or 6 numbers")
    try:
        numbers = [float(v) for v in box]
    except (TypeError, ValueError):
        raise OutOfBounds(400, "bbox must be 4 or 6 numbers") from None
    if len(numbers) not in (4, 6):
        raise OutOfBounds(400, "bbox must be 4 or 6 numbers")
    half = len(numbers) // 2
    west, south, east, north = numbers[0], numbers[1], numbers[half], numbers[half + 1]
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90 and -90 <= north <= 90):
        raise OutOfBounds(400, "bbox out of range: longitudes within [-180, 180], latitudes within [-90, 90]")


def check_q(value: object, limits: Limits) -> None:
    terms = value.split(",") if isinstance(value, str) else value
    if not isinstance(terms, list):
        return
    if len(terms) > limits.q_terms:
        raise OutOfBounds(400, f"q exceeds {limits.q_terms} terms")
    if sum(len(str(t)) for t in terms) > limits.q_length:
        raise OutOfBounds(400, f"q exceeds {limits.q_length} characters")


def check_search(params: dict[str, Any], limits: Limits) -> None:
    """What a search carries (query parameters or a JSON body), where it can carry it."""
    if params.get("filter") is not None:
        check_cql2(params["filter"], params.get("filter-lang") or params.get("filter_lang"), limits)
    if params.get("intersects") is not None:
        geometry = params["intersects"]
        if isinstance(geometry, str):
            geometry = check_json_text(geometry, limits, "intersects")
        check_geometry(geometry, limits, lon_lat=True)
    if params.get("bbox") is not None:
        check_bbox(params["bbox"])
    if params.get("q") is not None:
        check_q(params["q"], limits)


def check_body(document: object, limits: Limits) -> None:
    """A parsed JSON body: the search it may be (top level, or nested like an order's `search`) and every geometry.
    A GeoJSON object's own bbox may be in another CRS (titiler's coord_crs): only a search's bbox is checked."""
    if isinstance(document, dict) and "type" not in document:
        check_search(document, limits)
    for node, _ in walk(document):
        if isinstance(node, dict):
            if node is not document and ("filter" in node or "intersects" in node or "q" in node):
                check_search(node, limits)
            check_geometry(node, limits)


def cap_limit(scope: Scope, limits: Limits) -> None:
    """A `limit` query parameter above page_size is capped to it (STAC: cap, do not refuse)."""

    def capped(match: re.Match[bytes]) -> bytes:
        return b"limit=%d" % min(int(match.group(1)), limits.page_size)

    scope["query_string"] = LIMIT_PARAM.sub(capped, scope.get("query_string", b""))


def cap_body_limit(document: object, raw: bytes, scope: Scope, limits: Limits) -> bytes:
    """The body with a top-level `limit` above page_size capped (and its Content-Length to match)."""
    if not isinstance(document, dict):
        return raw
    limit = document.get("limit")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= limits.page_size:
        return raw
    raw = json.dumps({**document, "limit": limits.page_size}).encode()
    scope["headers"] = [(k, str(len(raw)).encode() if k == b"content-length" else v) for k, v in scope["headers"]]
    return raw


def check_head(scope: Scope, limits: Limits, inspect: bool = True) -> None:
    """Path, query string and headers, before the application sees the request."""
    if len(scope.get("raw_path") or scope["path"].encode()) > limits.path_bytes:
        raise OutOfBounds(414, f"request path exceeds {limits.path_bytes} bytes")
    query = scope.get("query_string", b"")
    if len(query) > limits.query_bytes:
        raise OutOfBounds(414, f"query string exceeds {limits.query_bytes} bytes")
    headers = scope["headers"]
    if len(headers) > limits.header_count:
        raise OutOfBounds(431, f"request has more than {limits.header_count} header fields")
    if sum(len(k) + len(v) for k, v in headers) > limits.header_bytes:
        raise OutOfBounds(431, f"request headers exceed {limits.header_bytes} bytes")
    length = dict(headers).get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limits.body_bytes:
        raise OutOfBounds(413, f"request body exceeds {limits.body_bytes} bytes")
    if query and inspect:
        params: dict[str, str] = {}
        for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            params.setdefault(key, value)
        check_search(params, limits)


# --- the database's bounds -------------------------------------------------------------------------------------


def database_timeouts() -> dict[str, tuple[type[Exception], ...]]:
    """The drivers' exceptions for a statement cancelled at statement_timeout, a lock not granted within
    lock_timeout and a database that cannot be reached (down, restarting, connection lost), for the drivers
    installed."""
    found: dict[str, list[type[Exception]]] = {"statement": [], "lock": [], "unreachable": [ConnectionError]}
    try:
        from asyncpg import exceptions as asyncpg_errors

        found["statement"].append(asyncpg_errors.QueryCanceledError)
        found["lock"].append(asyncpg_errors.LockNotAvailableError)
        found["unreachable"] += [
            asyncpg_errors.PostgresConnectionError,
            asyncpg_errors.CannotConnectNowError,
            asyncpg_errors.AdminShutdownError,
            asyncpg_errors.CrashShutdownError,
            # a pool resetting a connection the server dropped mid-query ("cannot switch to
            # state 15; another operation is in progress": seen with the postmaster killed)
            asyncpg_errors.InternalClientError,
        ]
    except ImportError:
        pass
    try:
        import psycopg
        from psycopg import errors as psycopg_errors

        found["statement"].append(psycopg_errors.QueryCanceled)
        found["lock"].append(psycopg_errors.LockNotAvailable)
        found["unreachable"].append(psycopg.OperationalError)  # also a pool's timeout; the two above are subclasses
    except ImportError:
        pass
    return {kind: tuple(types) for kind, types in found.items()}


DATABASE_RETRY_SECONDS = 2  # a restart of the embedded database takes about that long


def reconnecting(pool_class: Any) -> dict[str, Any]:
    """Settings of a psycopg pool that is usable again within seconds of its database coming back: a connection is
    checked before it is handed out (one round trip: those of a restarted server are dead), and a failed reconnection
    is given up after 2 s so the next request tries again at once (the default backs off up to a minute and more,
    a service stayed unready about 100 s after a database restart)."""
    return {"reconnect_timeout": 2.0, "check": pool_class.check_connection}


def install_database_handlers(app: FastAPI, limits: Limits) -> None:
    """A statement past statement_timeout → 504, a lock not granted within lock_timeout → 503, a database down or
    a connection lost → 503 (both with Retry-After: the client may try again); the connection goes back to its
    pool, healthy, or is discarded."""

    async def statement(request: Request, exc: Exception) -> Response:
        return problem(504, f"database statement exceeded the {limits.statement_seconds:g} s statement timeout")

    async def lock(request: Request, exc: Exception) -> Response:
        return problem(
            503,
            f"a database lock was not granted within {limits.lock_seconds:g} s",
            headers={"Retry-After": str(max(1, round(limits.lock_seconds)))},
        )

    async def unreachable(request: Request, exc: Exception) -> Response:
        log.warning("database unreachable: %s: %s", type(exc).__name__, str(exc).strip()[:200])
        return problem(
            503, "the database is unavailable; try again shortly", headers={"Retry-After": str(DATABASE_RETRY_SECONDS)}
        )

    handlers = database_timeouts()
    for kind, handler in (("unreachable", unreachable), ("statement", statement), ("lock", lock)):
        for exc_type in handlers[kind]:  # Starlette picks the handler of the nearest class in an error's MRO
            app.add_exception_handler(exc_type, handler)


# --- the middleware -----------------------------------------------------------------------------------------------


class BoundsMiddleware:
    """`inspect`: also check what a request carries (JSON, CQL2, geometries, q); off at the edge, where only sizes
    and times are bounded and each service inspects its own requests."""

    def __init__(self, app: ASGIApp, limits: Limits, inspect: bool = True):
        self.app, self.limits, self.inspect = app, limits, inspect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            check_head(scope, self.limits, self.inspect)
            if self.inspect:
                cap_limit(scope, self.limits)
            body = _BoundedBody(receive, self.limits)
            if self.inspect and scope["method"] in ("POST", "PUT", "PATCH"):
                raw = await body.read_all()
                document = self._document(raw, scope)
                if document is not None:
                    check_body(document, self.limits)
                    raw = cap_body_limit(document, raw, scope, self.limits)
                receive = _replay(raw, receive)
            else:
                receive = body.receive
        except OutOfBounds as exc:
            return await exc.response()(scope, receive, send)
        await self._within_budget(scope, receive, send, body)

    def _document(self, raw: bytes, scope: Scope) -> object | None:
        """The body as JSON when it is JSON: by its type, or by its look (frameworks parse a body without a type,
        or any body, as JSON), bounded before it is parsed. Other bodies pass as they are."""
        if not raw.strip():
            return None
        if _is_json(scope):
            return check_json_text(raw, self.limits, "request body")
        if raw.lstrip()[:1] not in (b"{", b"["):
            return None
        try:
            return check_json_text(raw, self.limits, "request body")
        except OutOfBounds as exc:
            if exc.status == 400 and exc.detail.startswith("request body is not valid JSON"):
                return None  # not JSON after all: the service judges it
            raise

    async def _within_budget(self, scope: Scope, receive: Receive, send: Send, body: _BoundedBody) -> None:
        """Run the app; answer 504 (and cancel it) when no response has started within the time budget, and the
        body's own 413/408 when the app stopped reading it (whatever it made of the error)."""
        started, replaced, late = asyncio.Event(), False, False

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if late:
                return  # the 504 went out: what the cancelled work still sends is dropped
            if message["type"] == "http.response.start" and body.refused is not None:
                replaced = True
                started.set()
                return await body.refused.response()(scope, receive, send)
            if replaced:
                return
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        work = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        waiting = asyncio.ensure_future(started.wait())
        done, _ = await asyncio.wait(
            {work, waiting}, timeout=self.limits.request_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        waiting.cancel()
        if not done:
            late = True
            work.cancel()
            work.add_done_callback(_forget)
            log.warning(
                "request time budget exceeded", extra={"path": scope["path"], "budget_s": self.limits.request_seconds}
            )
            return await problem(
                504, f"no response within the request time budget of {self.limits.request_seconds:g} s"
            )(scope, receive, send)
        try:
            await work
        except Exception:
            if body.refused is None or started.is_set():
                raise
            await body.refused.response()(scope, receive, send)


def _forget(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("cancelled request ended with %r", task.exception())


def _is_json(scope: Scope) -> bool:
    content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
    return bool(JSON_TYPES.match(content_type))


def _replay(raw: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()  # after the body: the client's disconnect

    return replayed


class _BoundedBody:
    """The request body as it streams in: its size counted, each piece awaited at most body_idle_seconds, and,
    after that long, its average rate at least body_min_rate (a client sending a byte a second is dropped)."""

    def __init__(self, receive: Receive, limits: Limits):
        self.inner, self.limits = receive, limits
        self.size, self.complete = 0, False
        self.refused: OutOfBounds | None = None
        self.started = time.monotonic()

    async def receive(self) -> Message:
        if self.complete:
            return await self.inner()
        try:
            message = await asyncio.wait_for(self.inner(), self.limits.body_idle_seconds)
        except TimeoutError:
            self.refused = OutOfBounds(408, f"request body stalled for more than {self.limits.body_idle_seconds:g} s")
            raise self.refused from None
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
            if self.size > self.limits.body_bytes:
                self.refused = OutOfBounds(413, f"request body exceeds {self.limits.body_bytes} bytes")
                raise self.refused
            elapsed = time.monotonic() - self.started
            if (
                not self.complete
                and elapsed > self.limits.body_idle_seconds
                and self.size / elapsed < self.limits.body_min_rate
            ):
                self.refused = OutOfBounds(408, f"request body arrives slower than {self.limits.body_min_rate} bytes/s")
                raise self.refused
        else:
            self.complete = True
        return message

    async def read_all(self) -> bytes:
        chunks = []
        while not self.complete:
            message = await self.receive()
            chunks.append(message.get("body", b""))
        return b"".join(chunks)
