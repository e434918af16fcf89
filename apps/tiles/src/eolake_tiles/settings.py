"""Tile service settings (env prefix EOLAKE_TILES_)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from eolake_kit import ServiceSettings
from eolake_kit.allowlist import AllowList
from eolake_kit.replicas import ReplicaSettings
from eolake_kit.settings import PostgresUrl
from eolake_tiles.manifest import MANIFEST

REMOTE_SCHEMES = ("s3", "https", "http")  # what the kit's allow-list checks (eolake_kit.allowlist)


class TilesSettings(ServiceSettings, ReplicaSettings):
    manifest = MANIFEST

    database_url: PostgresUrl = Field(
        SecretStr("postgresql://eolake@127.0.0.1:5432/eolake"),
        description="postgresql://user:password@host:port/dbname (app role)",
    )
    pool_size: int = Field(4, ge=1, le=100, description="database connections per worker")
    pool_timeout: float = Field(3, gt=0, le=60, description="seconds a request waits for a database connection")
    storage_path: Path | None = Field(None, description="local storage root: assets below it may be read")
    allowed_prefixes: list[str] = Field(
        default_factory=list, description="remote asset locations that may be read, e.g. s3://bucket/ (ending in /)"
    )
    cache_max_age: int = Field(3600, ge=0, description="Cache-Control max-age of tiles and images, seconds")
    tile_cache_mb: int = Field(64, ge=0, le=4096, description="in-process cache of rendered tiles (0: off)")
    tile_cache_ttl: float = Field(60, ge=0, description="seconds a rendered tile stays in the in-process cache")
    max_zoom: int = Field(22, ge=0, le=30, description="highest zoom level served")
    max_image_size: int = Field(2048, ge=64, le=8192, description="largest width/height/max_size of an image")
    max_tile_size: int = Field(1024, ge=64, le=4096, description="largest tilesize")
    max_expression_length: int = Field(256, ge=8, le=4096)
    max_expression_bands: int = Field(8, ge=1, le=64, description="most bands one expression produces (`;`)")
    max_expression_depth: int = Field(8, ge=1, le=64, description="deepest parenthesis nesting of an expression")
    max_expression_terms: int = Field(64, ge=4, le=1024, description="most tokens in an expression")
    max_part_size: int = Field(
        1024, ge=64, le=8192, description="default size of bbox/feature images and feature statistics"
    )
    max_parameter_length: int = Field(2048, ge=64, description="longest accepted query parameter value")
    mosaic_items_limit: int = Field(20, ge=1, le=500, description="items read at most for one mosaic tile")
    mosaic_scan_limit: int = Field(1000, ge=1, le=100_000, description="items pgstac scans at most per tile")
    mosaic_time_limit: int = Field(3, ge=1, le=60, description="seconds pgstac may search for one mosaic tile")
    request_timeout: float = Field(
        20, gt=0, le=300, description="seconds an image request may take before a 504 problem"
    )

    @field_validator("allowed_prefixes")
    @classmethod
    def remote_prefixes(cls, values: list[str]) -> list[str]:
        for value in values:
            parts = urlsplit(value)
            if (
                parts.scheme not in REMOTE_SCHEMES
                or not parts.netloc
                or not value.endswith("/")
                or ".." in parts.path
                or parts.query
                or parts.fragment
            ):
                raise ValueError(
                    f"{value!r}: an allowed prefix looks like s3://bucket/ or https://host/path/ "
                    "(a scheme, a host or bucket, ending in /)"
                )
        AllowList(urls=values)  # what the kit's allow-list refuses (credentials in a URL…) fails here, at start
        return values

    @model_validator(mode="after")
    def something_readable(self) -> TilesSettings:
        if self.request_timeout <= self.mosaic_time_limit:
            raise ValueError("request_timeout must exceed mosaic_time_limit (the search is part of the request)")
        return self

    @property
    def conninfo(self) -> str:
        return self.database_url.get_secret_value()
