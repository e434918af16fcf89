"""Time-series service settings (env prefix EOLAKE_TIMESERIES_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from eolake_kit import ServiceSettings
from eolake_kit.settings import Peer


class TimeseriesSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EOLAKE_TIMESERIES_", env_nested_delimiter="__", extra="ignore")

    service_name: str = "timeseries"
    root_path: str = "/timeseries"
    port: int = 8083
    stations_collection: str = Field("garonne-virtual-stations", pattern=r"^[A-Za-z0-9._-]+$")
    storage_path: Path | None = Field(None, description="series files are read only below this directory")
    cache_ttl: float = Field(30, ge=0, le=3600, description="seconds the station list from the catalog is kept")
    catalog_timeout: float = Field(5, gt=0, le=60, description="seconds one catalog request may take")
    max_pages: int = Field(20, ge=1, le=1000, description="catalog pages read at most for the station list")

    @property
    def catalog(self) -> Peer:
        """The STAC API the stations come from (the `catalog` peer)."""
        return self.peer("catalog", "/stac")
