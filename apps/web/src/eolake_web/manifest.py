"""The web service's manifest: what the platform and every deployment target know of it."""

from eolake_spec.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    name="web",
    title="Web",
    summary="the web view: map, search, items, hydrology charts, service status",
    path="/",
    port=8084,
    settings="eolake_web.settings:WebSettings",
    openapi=None,  # a page and its files: no API
)
