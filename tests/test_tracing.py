"""One request through two services is one trace: gateway (server, client) → catalog (server) → Postgres.

Both services run in this process (uvicorn in threads) against the session's real PostgreSQL + pgstac, with an
in-memory exporter on the process's tracer provider. Also: the log counter the error-log-rate alert reads.
"""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from eolake.embedded.gateway import create_gateway
from eolake_catalog.app import create_app
from eolake_catalog.settings import CatalogSettings
from eolake_kit import ServiceSettings, install_kit
from eolake_kit.tracing import configure_tracing
from servers import served, wait_until

PUBLIC = "http://127.0.0.1:8080"


@pytest.fixture(scope="module")
def spans():
    # The provider is per process: the first service configured it (or this does); a processor can always be added.
    exporter = InMemorySpanExporter()
    configure_tracing("tests", None).add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # the processor stays on the provider; a shut-down exporter keeps nothing


@pytest.fixture(scope="module")
def platform(pg, spans):
    settings = CatalogSettings(database_url=pg.app_dsn(), public_url=PUBLIC, root_path="/stac", pool_size=4)
    with served(create_app(settings)) as catalog:
        with served(create_gateway({"/stac": catalog}, public_url=PUBLIC, timeout=10)) as gateway:
            yield gateway


def scope_of(span) -> str:
    return span.instrumentation_scope.name if span.instrumentation_scope else ""


def describe(trace: list) -> list[tuple]:
    return [
        (s.name, s.kind.name, scope_of(s), format(s.context.span_id, "x"), s.parent and format(s.parent.span_id, "x"))
        for s in trace
    ]


def test_one_request_through_gateway_catalog_and_database_is_one_trace(platform, spans):
    spans.clear()
    response = httpx.get(platform + "/stac/collections", timeout=10)
    assert response.status_code == 200, response.text

    def gateway_server():
        return next(
            (
                s
                for s in spans.get_finished_spans()
                if s.kind == SpanKind.SERVER and s.attributes.get("http.route") == "/stac/{path:path}"
            ),
            None,
        )

    # The gateway's server span ends once the body has been streamed, just after the client has it.
    root = wait_until(gateway_server, timeout=5)
    assert root is not None and root.parent is None, "the request came without trace context: the gateway starts it"
    tid = root.context.trace_id
    trace = [s for s in spans.get_finished_spans() if s.context.trace_id == tid]
    by_parent: dict[int, list] = {}
    for span in trace:
        if span.parent is not None:
            by_parent.setdefault(span.parent.span_id, []).append(span)

    clients = [s for s in by_parent.get(root.context.span_id, []) if s.kind == SpanKind.CLIENT]
    assert len(clients) == 1 and scope_of(clients[0]) == "opentelemetry.instrumentation.httpx", describe(trace)
    client = clients[0]
    assert client.attributes.get("http.request.method", client.attributes.get("http.method")) == "GET"

    servers = by_parent.get(client.context.span_id, [])
    assert len(servers) == 1 and servers[0].kind == SpanKind.SERVER, describe(trace)
    catalog = servers[0]
    assert catalog.parent.is_remote, "the catalog continued the trace from the traceparent header"
    assert catalog.attributes["http.route"] == "/collections" and catalog.name == "GET /collections"
    assert catalog.attributes["http.response.status_code"] == 200

    queries = [s for s in trace if scope_of(s) == "opentelemetry.instrumentation.asyncpg"]
    assert queries, f"no database span in the trace: {describe(trace)}"
    assert all(q.parent.span_id == catalog.context.span_id and q.kind == SpanKind.CLIENT for q in queries)
    assert any(
        "collection" in q.attributes.get("db.statement", q.attributes.get("db.query.text", "")).lower() for q in queries
    )
    # One SERVER span per service, and nothing dangles from an unknown parent.
    assert [s.kind for s in trace].count(SpanKind.SERVER) == 2, describe(trace)
    known = {root.context.span_id, client.context.span_id, catalog.context.span_id}
    assert all(s.parent is None or s.parent.span_id in known for s in trace), describe(trace)


def test_a_second_request_is_a_second_trace(platform, spans):
    spans.clear()
    for _ in range(2):
        assert httpx.get(platform + "/stac/collections", timeout=10).status_code == 200
    assert wait_until(lambda: sum(s.parent is None for s in spans.get_finished_spans()) >= 2, timeout=5)
    roots = [s for s in spans.get_finished_spans() if s.parent is None]
    assert len({s.context.trace_id for s in roots}) == len(roots)


def test_log_records_are_counted_by_service_and_level():
    app = FastAPI()
    log = logging.getLogger("eolake.test.counted")

    @app.get("/warn")
    async def warn() -> dict:
        log.warning("something to look at")
        return {}

    install_kit(app, ServiceSettings(service_name="logcount"))

    def count(text: str, level: str) -> float:
        prefix = f'eolake_log_messages_total{{level="{level}",service="logcount"}} '
        return next(float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix))

    with served(app) as url:
        before = httpx.get(url + "/metrics").text
        assert count(before, "error") == 0, "every level's series exists from the start"
        assert httpx.get(url + "/warn").status_code == 200
        after = httpx.get(url + "/metrics").text
    assert count(after, "warning") == count(before, "warning") + 1
    assert count(after, "error") == 0
