"""The catalog service's manifest: what the platform and every deployment target know of it."""

from eolake_spec.manifest import PublicRoute, ServiceManifest

MANIFEST = ServiceManifest(
    name="catalog",
    title="Catalog",
    summary="STAC API over pgstac: item and collection search, transactions for admins",
    path="/stac",
    port=8081,
    settings="eolake_catalog.settings:CatalogSettings",
    database=True,
    replica_reads=True,  # searches and reads; writes, and reads after a client's own write, go to the primary
    schema="eolake_catalog.schema",  # indexed queryables from the collections' summaries
    rate_limited=(r"(GET|POST) /search$", r"GET /collections/[^/]+/items$"),
    openapi="/api",
    public_routes=(PublicRoute("POST", "/search", "STAC item search over POST (long filters): a read"),),
)
