"""Tracing samples: without an exporter nothing is recorded (but trace ids still flow); with one, the edge keeps its
share of traces and the services behind it follow the caller's decision. Each case in a fresh process: the tracer
provider is set once per process."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from opentelemetry import trace, propagate
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from eolake_kit.tracing import configure_tracing
provider = configure_tracing("probe", None, float(sys.argv[1]))
if sys.argv[3] == "exported":
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
tracer = trace.get_tracer("probe")
carrier = json.loads(sys.argv[2])
recorded, ids = 0, set()
for _ in range(200):
    with tracer.start_as_current_span("request", context=propagate.extract(carrier)) as span:
        recorded += span.is_recording()
        ids.add(span.get_span_context().trace_id)
print(json.dumps({"recorded": recorded, "valid_ids": all(ids), "traces": len(ids)}))
"""
SAMPLED_PARENT = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
UNSAMPLED_PARENT = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}


def probe(ratio: float, carrier: dict | None = None, exported: bool = True) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(ratio), json.dumps(carrier or {}), "exported" if exported else "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_without_an_exporter_nothing_is_recorded_but_trace_ids_flow():
    assert probe(1.0, exported=False) == {"recorded": 0, "valid_ids": True, "traces": 200}
    assert probe(1.0, SAMPLED_PARENT, exported=False)["recorded"] == 0


def test_the_edge_keeps_a_share_of_the_traces():
    assert probe(1.0)["recorded"] == 200
    assert 0 < probe(0.25)["recorded"] < 200


def test_a_service_follows_its_callers_decision():
    assert probe(0.01, SAMPLED_PARENT)["recorded"] == 200
    assert probe(1.0, UNSAMPLED_PARENT)["recorded"] == 0
