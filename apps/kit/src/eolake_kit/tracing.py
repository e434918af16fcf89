"""OpenTelemetry tracing with W3C trace context; spans are exported over OTLP/HTTP only when configured.

Sampled, not every request: the edge decides for a share of the traces (`sample_ratio`), the services behind it
follow the decision their caller passed on (parent-based). With no exporter nothing is recorded at all (ratio 0):
every request and database call still carries a trace id (logs and W3C headers have it), but no span is timed and
kept for nothing. Recording every database call cost the catalog most of its own middleware time (issue 16)."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased


def configure_tracing(service: str, otlp_endpoint: str | None, sample_ratio: float = 1.0) -> TracerProvider:
    """A provider per process; W3C tracecontext and baggage are OpenTelemetry's default propagators."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    sampler = ParentBased(TraceIdRatioBased(sample_ratio)) if sample_ratio > 0 else ALWAYS_OFF
    provider = TracerProvider(resource=Resource.create({"service.name": f"eolake-{service}"}), sampler=sampler)
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)
    return provider
