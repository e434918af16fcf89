"""What the tile service may read, and how GDAL reads it.

Every asset href is checked against the allow-list before rasterio/GDAL sees it (the check sits in the
per-asset reader, which both the item and the mosaic endpoints go through), so a STAC item pointing at
/etc/passwd, http://169.254.169.254/ or a VRT is refused with a 4xx and never opened.
"""

from __future__ import annotations

import os
from pathlib import Path

import attr
import rasterio
from rasterio.errors import RasterioIOError
from rio_tiler.io import Reader
from titiler.pgstac.reader import PgSTACReader, SimpleSTACReader

from eolake_kit import allowlist

# GDAL configuration, set in the process environment when the app is created (GDAL reads it at each open):
GDAL_ENV = {
    # Never list a directory to find sidecar files: one open = one GET, not a listing per COG.
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    # Remote reads only for GeoTIFFs (COGs); any other extension is refused by GDAL's curl layer too.
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF",
    # COG tiles sit next to each other: merge adjacent range requests into one.
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2",
    # Keep recently read blocks and headers: tiles of one map view hit the same COG blocks again.
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": str(64 * 1024 * 1024),
    "GDAL_CACHEMAX": "256",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    # No Python code in VRTs, no raw-file bands (file read through a VRT), whatever else happens.
    "GDAL_VRT_ENABLE_PYTHON": "NO",
    "GDAL_VRT_ENABLE_RAWRASTERBAND": "NO",
    # Bounded retries: a failing remote store answers the tile request quickly with an error.
    "GDAL_HTTP_MAX_RETRY": "1",
    "GDAL_HTTP_TIMEOUT": "10",
}
# GDAL_SKIP=VRT is NOT set: rasterio's own warping (calculate_default_transform, used by every reprojected tile)
# builds an in-memory VRT and fails with the VRT driver skipped (tested, GDAL 3.10). The equivalent used here:
# assets open with the GeoTIFF driver only (a VRT, even one renamed .tif, is "not recognized"), .vrt hrefs and
# vrt:// / /vsi… connection strings are refused by the allow-list before any open.
ALLOWED_DRIVER = "GTiff"


class AssetNotAllowed(Exception):
    """An asset location outside the allow-list (or of a refused kind): never opened."""


def configure_gdal() -> None:
    os.environ.update(GDAL_ENV)


class AllowList:
    """The kit's allow-list (the storage directory, the allowed prefixes) behind the refusals GDAL needs: no VRT,
    no GDAL virtual file system or driver prefix, no query or fragment in a remote location."""

    def __init__(self, storage: Path | None, prefixes: list[str]):
        self.locations = allowlist.AllowList(roots=[storage] if storage else [], urls=prefixes)

    def check(self, href: str) -> str:
        """The href to open, or AssetNotAllowed."""
        if not isinstance(href, str) or not href:
            raise AssetNotAllowed("asset location is empty or malformed")
        lowered = href.lower()
        if (
            lowered.startswith(("/vsi", "vrt:", "gti:", "mem:", "netcdf:", "hdf", "gpkg:", "zarr:"))
            or ".vrt" in lowered
        ):
            raise AssetNotAllowed("asset location of a refused kind (VRT, GDAL virtual file system or driver prefix)")
        if "://" in href and not lowered.startswith("file://") and any(c in href for c in "?#"):
            raise AssetNotAllowed("asset URL with a query or fragment is not allowed")
        try:
            location = self.locations.check(href)
        except allowlist.NotAllowed as exc:
            raise AssetNotAllowed(f"asset location refused by this tile service: {exc}") from None
        return f"s3://{location.target}" if location.kind == "s3" else location.target


def readers(allow: AllowList) -> tuple[type, type, type]:
    """(asset reader, item reader, mosaic item reader) bound to one allow-list."""

    @attr.s
    class GuardedReader(Reader):
        def __attrs_post_init__(self):
            if self.dataset is None:
                href = allow.check(self.input)
                try:
                    self.dataset = self._ctx_stack.enter_context(rasterio.open(href, driver=ALLOWED_DRIVER))
                except RasterioIOError as exc:
                    if "not recognized" in str(exc) or "supported file format" in str(exc):
                        raise AssetNotAllowed("asset is not a GeoTIFF/COG") from None
                    raise
            super().__attrs_post_init__()

    @attr.s
    class ItemReader(PgSTACReader):
        reader: type = attr.ib(default=GuardedReader)

    @attr.s
    class MosaicItemReader(SimpleSTACReader):
        reader: type = attr.ib(default=GuardedReader)

    return GuardedReader, ItemReader, MosaicItemReader
