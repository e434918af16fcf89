"""OpenTelemetry tracing with W3C trace context; spans are exported over OTLP/HTTP only when configured.

Sampled, not every request: the edge decides for a share of the traces (`sample_ratio`), the services behind it
follow the decision their caller passed on (parent-based). While spans go nowhere (no exporter, no processor)
nothing is recorded at all: every request and database call still carries a trace id (logs and W3C headers have
it), but no span is timed and kept for nothing. Recording every database call cost the catalog most of its own
middleware time (issue 16)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes


class _WhenExported(Sampler):
    """Parent-based sampling at a ratio, while the provider has somewhere to send spans; dropping otherwise."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio
        self.decide = ParentBased(TraceIdRatioBased(ratio))
        self.provider: TracerProvider | None = None

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if self.provider is None or not self.provider._active_span_processor._span_processors:
            return SamplingResult(Decision.DROP)
        return self.decide.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"WhenExported({self.decide.get_description()})"  # type: ignore[no-untyped-call]


def configure_tracing(service: str, otlp_endpoint: str | None, sample_ratio: float = 1.0) -> TracerProvider:
    """A provider per process; W3C tracecontext and baggage are OpenTelemetry's default propagators."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    sampler = _WhenExported(sample_ratio)
    provider = TracerProvider(resource=Resource.create({"service.name": f"eolake-{service}"}), sampler=sampler)
    sampler.provider = provider
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)
    return provider
