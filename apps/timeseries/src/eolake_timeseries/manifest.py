"""The timeseries service's manifest: what the platform and every deployment target know of it."""

from eolake_spec.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    name="timeseries",
    title="Timeseries",
    summary="hydrology virtual stations and their water-level series",
    path="/timeseries",
    port=8083,
    settings="eolake_timeseries.settings:TimeseriesSettings",
    calls=("catalog",),
    storage="read",
    secrets=("storage",),
    openapi="/api",
)
