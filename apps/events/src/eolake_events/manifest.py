"""The events service's manifest: the outbox relay, what the platform and every deployment target know of it."""

from eolake_spec.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    name="events",
    title="Events",
    summary="catalog and order changes published as CloudEvents to AMQP (transactional outbox relay)",
    path="/events",
    port=8088,
    settings="eolake_events.settings:EventsSettings",
    database=True,
    schema="eolake_events.schema",  # the outbox and its triggers, after pgstac's and the downloads' schemas
    secrets=("amqp",),
    requires=("events",),  # no broker configured for a target: no relay, and no outbox kept
    openapi=None,  # no API: a description of the exchange at its root, probes and metrics
)
