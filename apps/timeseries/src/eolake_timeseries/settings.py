"""Time-series service settings (env prefix EOLAKE_TIMESERIES_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from eolake_kit import ServiceSettings
from eolake_kit.settings import HttpUrl, Peer
from eolake_timeseries.manifest import MANIFEST


class TimeseriesSettings(ServiceSettings):
    manifest = MANIFEST

    stations_collection: str = Field("garonne-virtual-stations", pattern=r"^[A-Za-z0-9._-]+$")

    # Storage: where series are read from (the platform spec's storage kind). Credentials for S3 come from the
    # standard AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment variables, never from these settings.
    storage_kind: str = Field(
        "local",
        pattern="^(local|s3)$",
        description="local: files below storage_path; s3: objects of s3_bucket (s3://<bucket>/<key> asset hrefs)",
    )
    storage_path: Path | None = Field(None, description="series files are read only below this directory")
    s3_bucket: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]{3,255}$", description="the only bucket series are read from (storage_kind s3)"
    )
    s3_endpoint: HttpUrl | None = Field(None, description="S3-compatible endpoint URL; None: AWS")
    s3_region: str | None = None
    s3_timeout: float = Field(5, gt=0, le=60, description="seconds an S3 connection or read may take")
    max_series_bytes: int = Field(
        8 * 1024**2,
        ge=1024,
        le=256 * 1024**2,
        description="largest series object read from S3; larger ones are refused (502)",
    )

    cache_ttl: float = Field(30, ge=0, le=3600, description="seconds the station list from the catalog is kept")
    catalog_timeout: float = Field(5, gt=0, le=60, description="seconds one catalog request may take")
    position_tolerance: float = Field(
        0.001,
        gt=0,
        le=1,
        description="degrees around a position query's point "
        "within which a station is at that position (0.001° ≈ 100 m)",
    )
    max_query_stations: int = Field(
        200,
        ge=1,
        le=10_000,
        description="most stations one EDR query may read the "
        "series of (a larger selection is refused: narrow the area)",
    )
    max_pages: int = Field(20, ge=1, le=1000, description="catalog pages read at most for the station list")

    @model_validator(mode="after")
    def s3_needs_bucket(self) -> TimeseriesSettings:
        if self.storage_kind == "s3" and not self.s3_bucket:
            raise ValueError("storage_kind s3 needs s3_bucket")
        return self

    @property
    def catalog(self) -> Peer:
        """The STAC API the stations come from (the `catalog` peer)."""
        return self.peer("catalog")
