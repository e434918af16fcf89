from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from eolake_kit import ServiceSettings


class ProviderConfig(BaseModel):
    """One search backend. The platform spec's `providers` (enabled ones) arrive as EOLAKE_SEARCH_PROVIDERS JSON."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    kind: Literal["stac", "eodag"] = "stac"
    url: str | None = Field(None, description="STAC API root; a path such as /stac is relative to the public URL")
    enabled: bool = True
    timeout_seconds: float = Field(10, gt=0, le=120)
    collections: list[str] = Field([], description="only these collections of the provider (empty: all)")
    free_text: Literal["q", "filter"] = Field(
        "q", description="how `q` reaches the provider: the free-text `q` parameter, or a CQL2 filter over keywords, "
                         "title and description (for APIs without item free text, such as stac-fastapi-pgstac)")

    @model_validator(mode="after")
    def stac_needs_url(self) -> ProviderConfig:
        if self.kind == "stac" and not self.url:
            raise ValueError(f"provider {self.name}: a STAC provider needs a url")
        return self


class SearchSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EOLAKE_SEARCH_", env_nested_delimiter="__", extra="ignore")

    service_name: str = "search"
    root_path: str = "/search"
    port: int = 8086
    storage_path: Path = Field(Path("data"), description="the platform's storage folder (EODAG's config goes here)")
    catalog_url: str | None = Field(None, description="the local catalog; default <public_url>/stac")
    local_provider: str = Field("local", pattern=r"^[a-z0-9][a-z0-9_-]*$",
                                description="the local catalog's provider name ('' would not be valid)")
    local_timeout_seconds: float = Field(10, gt=0, le=120)
    providers: list[ProviderConfig] = Field([], description="other providers (the local catalog is always one)")
    thesaurus_url: str | None = Field(None, description="the thesaurus service; default <public_url>/thesaurus")
    thesaurus_timeout_seconds: float = Field(2, gt=0, le=30)
    expansion_depth: int = Field(1, ge=0, le=3, description="narrower levels added to a free-text query")
    default_limit: int = Field(10, ge=1)
    max_limit: int = Field(100, ge=1, le=1000)
    provider_page_max: int = Field(1000, ge=10, description="largest page asked of a provider")

    @field_validator("catalog_url", "thesaurus_url")
    @classmethod
    def http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def consistent(self) -> SearchSettings:
        names = [self.local_provider] + [p.name for p in self.providers]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"provider names must be unique: {', '.join(sorted(duplicates))} repeated")
        if self.default_limit > self.max_limit:
            raise ValueError("default_limit must not exceed max_limit")
        return self

    @property
    def base(self) -> str:
        return str(self.public_url).rstrip("/")

    def all_providers(self) -> list[ProviderConfig]:
        local = ProviderConfig(name=self.local_provider, kind="stac", url=self.catalog_url or f"{self.base}/stac",
                               timeout_seconds=self.local_timeout_seconds, free_text="filter")
        out = [local]
        for p in self.providers:
            if p.enabled:
                url = f"{self.base}{p.url}" if p.url and p.url.startswith("/") else p.url
                out.append(p.model_copy(update={"url": url.rstrip("/") if url else url}))
        return out

    @property
    def thesaurus(self) -> str:
        return self.thesaurus_url or f"{self.base}/thesaurus"
