"""The tiles service's manifest: what the platform and every deployment target know of it."""

from eolake_spec.manifest import PublicRoute, ServiceManifest

MANIFEST = ServiceManifest(
    name="tiles",
    title="Tiles",
    summary="map tiles, previews and statistics of the catalogued rasters (titiler-pgstac)",
    path="/tiles",
    port=8082,
    settings="eolake_tiles.settings:TilesSettings",
    database=True,
    replica_reads=True,  # tiles and searches; a search registration, and tiles right after it, use the primary
    storage="read",
    secrets=("storage",),
    # Everything that reads rasters or the database; a map view asks for dozens of tiles at once.
    rate_limited=(r"(GET|POST) /(collections|searches)/",),
    rate_limit=(50, 200),
    openapi="/api",
    public_routes=(
        PublicRoute("POST", "*/statistics", "statistics of the pixels under a GeoJSON sent in the body: a read"),
        PublicRoute("POST", "*/feature*", "an image of the pixels under a GeoJSON sent in the body: a read"),
    ),
    gdal=True,
)
