"""The embedded trace store (eolake.embedded.traces) on a real loopback port: spans exported by OpenTelemetry's own
OTLP/HTTP exporter (protobuf) and OTLP/JSON are assembled into traces; the store stays within its span budget; bad
payloads are 400/415 problems and store nothing."""

from __future__ import annotations

import gzip
import json
import threading

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from eolake.embedded.postgres import free_port
from eolake.embedded.traces import TraceStore, serve

PROBLEM = "application/problem+json"


@pytest.fixture
def store_url():
    """A trace store of 60 spans at most, served on a free loopback port."""
    store = TraceStore(max_spans=60)
    server = serve(free_port(), store)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def tracer(url: str, service: str):
    """A provider of its own (not the process's global one) exporting synchronously over OTLP/HTTP protobuf."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces")))
    return provider.get_tracer("tests"), provider


def test_spans_of_two_services_exported_as_protobuf_form_one_trace(store_url):
    search, search_provider = tracer(store_url, "eolake-search")
    catalog, catalog_provider = tracer(store_url, "eolake-catalog")
    with search.start_as_current_span("GET /search", kind=SpanKind.SERVER) as root:
        with search.start_as_current_span("GET", kind=SpanKind.CLIENT) as call:
            context = set_span_in_context(call)
            with catalog.start_as_current_span("POST /search", kind=SpanKind.SERVER, context=context) as inner:
                inner.set_attribute("http.status_code", 502)
                inner.set_status(Status(StatusCode.ERROR, "upstream down"))
    search_provider.shutdown()
    catalog_provider.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")

    found = httpx.get(f"{store_url}/api/traces/{trace_id}", timeout=5).json()
    spans = {s["name"]: s for s in found["spans"]}
    assert found["services"] == ["eolake-catalog", "eolake-search"] and found["span_count"] == len(found["spans"]) == 3
    assert found["root"] == {"name": "GET /search", "service": "eolake-search"} and found["error"] is True
    assert spans["GET /search"]["parent_span_id"] is None and spans["GET /search"]["offset_ms"] == 0
    assert spans["GET"]["parent_span_id"] == spans["GET /search"]["span_id"] and spans["GET"]["kind"] == "CLIENT"
    assert spans["POST /search"]["parent_span_id"] == spans["GET"]["span_id"]
    assert spans["POST /search"]["service"] == "eolake-catalog" and spans["POST /search"]["error"] is True
    assert spans["POST /search"]["status_message"] == "upstream down"
    assert spans["POST /search"]["attributes"]["http.status_code"] == 502
    assert 0 <= spans["POST /search"]["offset_ms"] <= found["duration_ms"]

    listed = httpx.get(f"{store_url}/api/traces", params={"errors": "true"}, timeout=5).json()
    assert [t["trace_id"] for t in listed["traces"]] == [trace_id]


def otlp_json(trace_id: str, spans: list[tuple[str, str | None, str, int]], service: str = "eolake-thesaurus"):
    """An OTLP/JSON export: (span id, parent id, name, duration ms) each, ids in hex as the JSON encoding says."""
    start = 1_700_000_000_000_000_000
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "tests"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                **({"parentSpanId": parent} if parent else {}),
                                "name": name,
                                "kind": 2,
                                "startTimeUnixNano": str(start),
                                "endTimeUnixNano": str(start + duration * 1_000_000),
                                "attributes": [{"key": "http.route", "value": {"stringValue": "/expand"}}],
                            }
                            for span_id, parent, name, duration in spans
                        ],
                    }
                ],
            }
        ]
    }


def test_otlp_json_with_hex_ids_is_assembled_and_listed_by_duration(store_url):
    slow, quick = "ab" * 16, "cd" * 16
    for trace_id, duration in ((slow, 900), (quick, 5)):
        body = otlp_json(trace_id, [("1" * 16, None, "GET /expand", duration), ("2" * 16, "1" * 16, "SELECT", 1)])
        answer = httpx.post(f"{store_url}/v1/traces", json=body, timeout=5)
        assert answer.status_code == 200, answer.text
    found = httpx.get(f"{store_url}/api/traces/{slow}", timeout=5).json()
    assert [s["name"] for s in found["spans"]] == ["GET /expand", "SELECT"]
    assert found["spans"][0]["kind"] == "SERVER" and found["duration_ms"] == 900
    assert found["spans"][1]["attributes"] == {"http.route": "/expand"}
    slow_only = httpx.get(f"{store_url}/api/traces", params={"min_duration_ms": 100}, timeout=5).json()
    assert [t["trace_id"] for t in slow_only["traces"]] == [slow]
    both = httpx.get(f"{store_url}/api/traces", params={"service": "eolake-thesaurus"}, timeout=5).json()
    assert {t["trace_id"] for t in both["traces"]} == {slow, quick}


def test_a_span_sent_twice_is_kept_once(store_url):
    body = otlp_json("12" * 16, [("4" * 16, None, "GET /", 3), ("5" * 16, "4" * 16, "SELECT", 1)])
    for _ in range(2):  # an exporter retrying after a lost answer
        assert httpx.post(f"{store_url}/v1/traces", json=body, timeout=5).status_code == 200
    assert httpx.get(f"{store_url}/api/traces/{'12' * 16}", timeout=5).json()["span_count"] == 2
    assert httpx.get(f"{store_url}/healthz", timeout=5).json()["spans"] == 2


def test_gzip_exports_are_read(store_url):
    body = gzip.compress(json.dumps(otlp_json("ef" * 16, [("3" * 16, None, "GET /", 3)])).encode())
    answer = httpx.post(
        f"{store_url}/v1/traces",
        content=body,
        timeout=5,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert answer.status_code == 200
    assert httpx.get(f"{store_url}/api/traces/{'ef' * 16}", timeout=5).json()["span_count"] == 1


def test_the_store_keeps_at_most_its_span_budget_dropping_the_oldest_traces(store_url):
    ids = [f"{i:032x}" for i in range(1, 31)]
    for trace_id in ids:  # 30 traces of 5 spans: 150 spans for a budget of 60
        spans = [(f"{k + 1:016x}", None if k == 0 else f"{1:016x}", f"span {k}", 1) for k in range(5)]
        assert httpx.post(f"{store_url}/v1/traces", json=otlp_json(trace_id, spans), timeout=5).status_code == 200
    health = httpx.get(f"{store_url}/healthz", timeout=5).json()
    assert health["spans"] <= 60 and health["traces"] == 12 and health["max_spans"] == 60
    assert httpx.get(f"{store_url}/api/traces/{ids[0]}", timeout=5).status_code == 404
    assert httpx.get(f"{store_url}/api/traces/{ids[-1]}", timeout=5).json()["span_count"] == 5
    listed = httpx.get(f"{store_url}/api/traces", params={"limit": 100}, timeout=5).json()["traces"]
    assert {t["trace_id"] for t in listed} == set(ids[-12:])


@pytest.mark.parametrize(
    ("content_type", "body", "status", "detail"),
    [
        ("application/x-protobuf", b"\xff\xff\xff not protobuf", 400, "protobuf"),
        ("application/json", b"{not json", 400, "not JSON"),
        ("application/json", b"[]", 400, "not an ExportTraceServiceRequest"),
        ("application/json", json.dumps(otlp_json("zz" * 16, [("1" * 16, None, "x", 1)])).encode(), 400, "hexadecimal"),
        ("application/json", json.dumps(otlp_json("ab" * 8, [("1" * 16, None, "x", 1)])).encode(), 400, "hexadecimal"),
        ("application/json", json.dumps({"resourceSpans": "many"}).encode(), 400, "ExportTraceServiceRequest"),
        ("text/plain", b"hello", 415, "application/x-protobuf"),
    ],
)
def test_bad_payloads_are_problems_and_store_nothing(store_url, content_type, body, status, detail):
    answer = httpx.post(f"{store_url}/v1/traces", content=body, headers={"Content-Type": content_type}, timeout=5)
    assert answer.status_code == status and answer.headers["content-type"] == PROBLEM
    assert detail in answer.json()["detail"]
    assert httpx.get(f"{store_url}/healthz", timeout=5).json()["spans"] == 0


def test_bad_listing_parameters_and_unknown_traces(store_url):
    for params in (
        {"limit": 0},
        {"limit": 101},
        {"limit": "x"},
        {"errors": "maybe"},
        {"min_duration_ms": -1},
        {"sort": "name"},
    ):
        answer = httpx.get(f"{store_url}/api/traces", params=params, timeout=5)
        assert answer.status_code == 400 and answer.headers["content-type"] == PROBLEM, params
    assert httpx.get(f"{store_url}/api/traces/{'0' * 32}", timeout=5).status_code == 404
    assert httpx.get(f"{store_url}/api/traces/not-an-id", timeout=5).status_code == 404
    assert httpx.post(f"{store_url}/v1/metrics", content=b"", timeout=5).status_code == 404
