"""The embedded target's trace store: an OTLP/HTTP receiver keeping the recent traces in memory, bounded.

    python -m eolake.embedded.traces --port PORT [--max-spans N]

Run by the supervisor when the stack names no `observability.otlp_endpoint`; every service and the gateway then
export their spans here. POST /v1/traces takes an OTLP ExportTraceServiceRequest as protobuf
(application/x-protobuf) or JSON (application/json, ids in hex as OTLP/JSON says), optionally gzip-compressed.
At most `max_spans` spans are kept: the traces least recently added to go first. The operations console reads them
through the web view's proxy:

    GET /api/traces?limit=&min_duration_ms=&errors=true&service=   recent traces, newest first (summaries)
    GET /api/traces/<32 hex digits>                                one trace, its spans in start order
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import re
import signal
import threading
import zlib
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

MAX_SPANS = 20_000
MAX_SPANS_PER_TRACE = 2_000  # one runaway trace cannot push every other out
MAX_BODY = 4 << 20  # the SDK's batches are 512 spans: far below this
MAX_ATTRIBUTES, MAX_VALUE_CHARS = 40, 300
LIST_LIMIT = 100
TRACE_ID = re.compile(r"[0-9a-f]{32}")
HEX_IDS = {"traceId": 32, "spanId": 16, "parentSpanId": 16}
PROTOBUF, JSON = "application/x-protobuf", "application/json"


class BadPayload(ValueError):
    pass


# ------------------------------------------------------------------------------------------------ decoding


def _hex_ids_to_base64(node):
    """OTLP/JSON writes trace and span ids in hex; protobuf's JSON mapping expects bytes in base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in HEX_IDS and isinstance(value, str) and value:
                if not re.fullmatch(rf"[0-9a-fA-F]{{{HEX_IDS[key]}}}", value):
                    raise BadPayload(f"{key} {value[:40]!r} is not {HEX_IDS[key]} hexadecimal digits")
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for value in node:
            _hex_ids_to_base64(value)
    return node


def decode(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    if content_type == PROTOBUF:
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise BadPayload(f"not an OTLP ExportTraceServiceRequest in protobuf: {exc}") from None
        return request
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadPayload("the body is not JSON") from None
    if not isinstance(document, dict):
        raise BadPayload("the body is not an ExportTraceServiceRequest object")
    try:
        json_format.ParseDict(_hex_ids_to_base64(document), request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise BadPayload(f"not an OTLP ExportTraceServiceRequest in JSON: {exc}") from None
    return request


def _value(any_value):
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "bytes_value":
        return f"<{len(any_value.bytes_value)} bytes>"
    if kind in ("array_value", "kvlist_value"):  # shown as their JSON
        return json.dumps(json_format.MessageToDict(getattr(any_value, kind)))[:MAX_VALUE_CHARS]
    value = getattr(any_value, kind)
    return value[:MAX_VALUE_CHARS] if isinstance(value, str) else value


def attributes(pairs) -> dict:
    return {kv.key: _value(kv.value) for kv in list(pairs)[:MAX_ATTRIBUTES]}


def spans_of(request: ExportTraceServiceRequest) -> list[dict]:
    """Each span as the store keeps it: ids in hex, its service (resource service.name), times in nanoseconds."""
    found = []
    for resource_spans in request.resource_spans:
        service = attributes(resource_spans.resource.attributes).get("service.name") or "unknown"
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise BadPayload("a span without a 16-byte trace id and an 8-byte span id")
                found.append(
                    {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex() or None,
                        "name": span.name[:MAX_VALUE_CHARS],
                        "kind": Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                        "service": service,
                        "scope": scope_spans.scope.name,
                        "start_ns": span.start_time_unix_nano,
                        "end_ns": max(span.end_time_unix_nano, span.start_time_unix_nano),
                        "status": Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
                        "status_message": span.status.message[:MAX_VALUE_CHARS],
                        "attributes": attributes(span.attributes),
                    }
                )
    return found


# ------------------------------------------------------------------------------------------------ the store


def failed(span: dict) -> bool:
    status = span["attributes"].get("http.status_code") or span["attributes"].get("http.response.status_code")
    return span["status"] == "ERROR" or (isinstance(status, int) and status >= 500)


class TraceStore:
    """Recent traces by id, at most `max_spans` spans in all; thread-safe. A span sent again (an exporter retrying
    after a lost answer) replaces itself."""

    def __init__(self, max_spans: int = MAX_SPANS) -> None:
        self.max_spans = max_spans
        self.traces: OrderedDict[str, dict[str, dict]] = OrderedDict()  # trace id → span id → span
        self.summaries: dict[str, dict] = {}  # trace id → summary, until the trace changes
        self.spans = 0
        self.dropped = 0
        self.lock = threading.Lock()

    def add(self, spans: list[dict]) -> None:
        with self.lock:
            for span in spans:
                trace = self.traces.setdefault(span["trace_id"], {})
                self.traces.move_to_end(span["trace_id"])
                if span["span_id"] not in trace and len(trace) >= MAX_SPANS_PER_TRACE:
                    self.dropped += 1
                    continue
                self.spans += span["span_id"] not in trace
                trace[span["span_id"]] = span
                self.summaries.pop(span["trace_id"], None)
            while self.spans > self.max_spans:
                trace_id, evicted = self.traces.popitem(last=False)
                self.summaries.pop(trace_id, None)
                self.spans -= len(evicted)

    def trace(self, trace_id: str) -> dict | None:
        """The trace's spans as a waterfall: each after its parent (depth-first, siblings by start), with its depth,
        its offset from the trace's start and its duration."""
        with self.lock:
            spans = list(self.traces.get(trace_id, {}).values())
        if not spans:
            return None
        start = min(s["start_ns"] for s in spans)
        return {
            **summary(trace_id, spans),
            "spans": [
                {
                    **{k: v for k, v in s.items() if k not in ("start_ns", "end_ns", "trace_id")},
                    "depth": depth,
                    "offset_ms": (s["start_ns"] - start) / 1e6,
                    "duration_ms": (s["end_ns"] - s["start_ns"]) / 1e6,
                    "error": failed(s),
                }
                for s, depth in waterfall(spans)
            ],
        }

    def recent(
        self, limit: int = 20, min_duration_ms: float = 0, errors: bool = False, service: str | None = None
    ) -> list[dict]:
        with self.lock:
            for trace_id in self.traces.keys() - self.summaries.keys():
                self.summaries[trace_id] = summary(trace_id, list(self.traces[trace_id].values()))
            summaries = list(self.summaries.values())
        found = []
        for about in summaries:
            if (
                about["duration_ms"] < min_duration_ms
                or (errors and not about["error"])
                or (service and service not in about["services"])
            ):
                continue
            found.append(about)
        found.sort(key=lambda t: t["start_ms"], reverse=True)
        return found[:limit]

    def stats(self) -> dict:
        with self.lock:
            return {
                "traces": len(self.traces),
                "spans": self.spans,
                "max_spans": self.max_spans,
                "dropped_spans": self.dropped,
            }


def waterfall(spans: list[dict]) -> list[tuple[dict, int]]:
    """Depth-first from the roots (spans whose parent is not kept), siblings in start order (the longer first)."""
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict]] = {}
    for span in sorted(spans, key=lambda s: (s["start_ns"], -s["end_ns"])):
        children.setdefault(span["parent_span_id"] if span["parent_span_id"] in ids else None, []).append(span)
    ordered, stack = [], [(span, 0) for span in reversed(children.pop(None, []))]
    while stack:
        span, depth = stack.pop()
        ordered.append((span, depth))
        stack += [(child, depth + 1) for child in reversed(children.pop(span["span_id"], []))]
    # Spans whose parents form a loop (a broken exporter) reach no root: shown at the top level all the same.
    return ordered + [(span, 0) for rest in children.values() for span in rest]


def summary(trace_id: str, spans: list[dict]) -> dict:
    ids = {s["span_id"] for s in spans}
    start, end = min(s["start_ns"] for s in spans), max(s["end_ns"] for s in spans)
    roots = [s for s in spans if s["parent_span_id"] not in ids] or spans
    root = min(roots, key=lambda s: s["start_ns"])
    return {
        "trace_id": trace_id,
        "root": {"name": root["name"], "service": root["service"]},
        "start_ms": start / 1e6,
        "duration_ms": (end - start) / 1e6,
        "span_count": len(spans),
        "services": sorted({s["service"] for s in spans}),
        "error": any(failed(s) for s in spans),
    }


# ------------------------------------------------------------------------------------------------ HTTP


def listing_params(query: str) -> dict:
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = set(params) - {"limit", "min_duration_ms", "errors", "service"}
    if unknown:
        raise BadPayload(f"unknown parameters: {', '.join(sorted(unknown))}")
    try:
        limit = int(params.get("limit", 20))
        min_duration = float(params.get("min_duration_ms", 0))
    except ValueError:
        raise BadPayload("limit is an integer and min_duration_ms a number") from None
    if not 1 <= limit <= LIST_LIMIT or min_duration < 0:
        raise BadPayload(f"limit is between 1 and {LIST_LIMIT}, min_duration_ms not negative")
    if params.get("errors", "false") not in ("true", "false"):
        raise BadPayload("errors is true or false")
    return {
        "limit": limit,
        "min_duration_ms": min_duration,
        "errors": params.get("errors") == "true",
        "service": params.get("service") or None,
    }


class TraceHandler(BaseHTTPRequestHandler):
    """The store's HTTP face: OTLP exports in (POST /v1/traces), recent traces and one trace out."""

    store: TraceStore

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        if url.path == "/healthz":
            return self._json(200, {"status": "ok", **self.store.stats()})
        if url.path == "/api/traces":
            return self._listing(url.query)
        trace_id = url.path.removeprefix("/api/traces/")
        if url.path.startswith("/api/traces/") and TRACE_ID.fullmatch(trace_id):
            found = self.store.trace(trace_id)
            return (
                self._json(200, found)
                if found
                else self._problem(404, f"no trace {trace_id} is kept (unknown, or evicted)")
            )
        return self._problem(404, f"no resource {url.path}")

    def _listing(self, query: str) -> None:
        try:
            params = listing_params(query)
        except BadPayload as exc:
            return self._problem(400, str(exc))
        return self._json(200, {"traces": self.store.recent(**params), "store": self.store.stats()})

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/v1/traces":
            return self._problem(404, "OTLP traces are posted to /v1/traces")
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type not in (PROTOBUF, JSON):
            return self._problem(415, f"an OTLP export is {PROTOBUF} or {JSON}")
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY:
            return self._problem(413, f"an export is at most {MAX_BODY} bytes")
        try:
            body = self._body(self.rfile.read(length))
            spans = spans_of(decode(body, content_type))
        except BadPayload as exc:
            return self._problem(400, str(exc))
        self.store.add(spans)
        if content_type == PROTOBUF:
            return self._answer(200, ExportTraceServiceResponse().SerializeToString(), PROTOBUF)
        return self._json(200, {})

    def _body(self, raw: bytes) -> bytes:
        if (self.headers.get("Content-Encoding") or "").lower() != "gzip":
            return raw
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = inflater.decompress(raw, MAX_BODY)
        except (zlib.error, gzip.BadGzipFile):
            raise BadPayload("the body is not gzip") from None
        if inflater.unconsumed_tail:
            raise BadPayload(f"the export inflates to more than {MAX_BODY} bytes")
        return body

    def _json(self, status: int, body: dict) -> None:
        self._answer(status, json.dumps(body).encode(), JSON)

    def _problem(self, status: int, detail: str) -> None:
        body = {
            "type": "about:blank",
            "title": "Bad Request" if status == 400 else "Error",
            "status": status,
            "detail": detail,
        }
        self._answer(status, json.dumps(body).encode(), "application/problem+json")

    def _answer(self, status: int, data: bytes, media_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        return


def handler(store: TraceStore) -> type[BaseHTTPRequestHandler]:
    return type("BoundTraceHandler", (TraceHandler,), {"store": store})


def serve(port: int, store: TraceStore) -> ThreadingHTTPServer:
    return ThreadingHTTPServer(("127.0.0.1", port), handler(store))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eolake.embedded.traces")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-spans", type=int, default=MAX_SPANS)
    args = parser.parse_args(argv)
    server = serve(args.port, TraceStore(args.max_spans))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


if __name__ == "__main__":
    main()
