"""The tiles service's manifest: what the platform and every deployment target know of it."""

from eolake_spec.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    name="tiles",
    title="Tiles",
    summary="map tiles, previews and statistics of the catalogued rasters (titiler-pgstac)",
    path="/tiles",
    port=8082,
    settings="eolake_tiles.settings:TilesSettings",
    database=True,
    storage="read",
    secrets=("storage",),
    gdal=True,
)
