"""The search service's manifest: what the platform and every deployment target know of it."""

from eolake_spec.manifest import PublicRoute, ServiceManifest

MANIFEST = ServiceManifest(
    name="search",
    title="Search",
    summary="federated STAC search over the catalog and external providers",
    path="/search",
    port=8086,
    settings="eolake_search.settings:SearchSettings",
    calls=("catalog", "thesaurus"),
    secrets=("signing",),
    rate_limited=(r"(GET|POST) /search$", r"GET /collections/[^/]+/items$"),
    public_routes=(PublicRoute("POST", "/search", "federated STAC item search over POST: a read"),),
)
