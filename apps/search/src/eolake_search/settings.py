from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

from eolake_kit import ServiceSettings
from eolake_search.manifest import MANIFEST


class ProviderConfig(BaseModel):
    """One search backend. The platform spec's `providers` (enabled ones) arrive as EOLAKE_SEARCH_PROVIDERS JSON."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    kind: Literal["stac", "eodag"] = "stac"
    url: str | None = Field(None, description="STAC API root; a path such as /stac is relative to the public URL")
    enabled: bool = True
    timeout_seconds: float = Field(10, gt=0, le=120)
    collections: list[str] = Field([], description="only these collections of the provider (empty: all)")
    public_url: str | None = Field(
        None,
        description="set by the service: the public URL of a platform service "
        "reached at `url`; its next links are followed internally",
    )
    item_search: bool = Field(
        True,
        description="search its items; off: its collections are only discoverable "
        "(EODAG providers that cannot be reached from here)",
    )
    sortable: bool = Field(
        True,
        description="asked with `sortby` (a STAC API with the sort extension); off: its "
        "pages are sorted by the federated search before the merge",
    )
    free_text: Literal["q", "filter"] = Field(
        "q",
        description="how `q` reaches the provider: the free-text `q` parameter, or a CQL2 filter over keywords, "
        "title and description (for APIs without item free text, such as stac-fastapi-pgstac)",
    )

    @model_validator(mode="after")
    def stac_needs_url(self) -> ProviderConfig:
        if self.kind == "stac" and not self.url:
            raise ValueError(f"provider {self.name}: a STAC provider needs a url")
        return self


class SearchSettings(ServiceSettings):
    manifest = MANIFEST

    storage_path: Path = Field(Path("data"), description="the platform's storage folder (EODAG's config goes here)")
    local_provider: str = Field(
        "local",
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="the local catalog's provider name ('' would not be valid)",
    )
    local_timeout_seconds: float = Field(10, gt=0, le=120)
    providers: list[ProviderConfig] = Field([], description="other providers (the local catalog is always one)")
    priorities: dict[str, list[str]] = Field(
        {},
        description=(
            "per collection ('*': any other), providers asked one after the other, the first that answers serving the "
            "search (a cascade; eolake_search.federation); the others are asked at once, as always"
        ),
    )
    thesaurus_timeout_seconds: float = Field(2, gt=0, le=30)
    expansion_depth: int = Field(1, ge=0, le=3, description="narrower levels added to a free-text query")
    catalog_ttl_seconds: float = Field(
        30, gt=0, description="how long the STAC providers' collection lists are reused by the dataset catalog"
    )
    max_expanded_terms: int = Field(30, ge=1, le=200, description="most terms a free-text query expands to")
    catalog_languages: list[str] = Field(
        ["en", "fr"],
        min_length=1,
        description=(
            "languages of the catalog's metadata and of its users' queries: the thesaurus's labels in other languages "
            "are not searched"
        ),
    )
    default_limit: int = Field(10, ge=1)
    max_limit: int = Field(100, ge=1, le=1000, description="a larger limit is capped to it")
    provider_page_max: int = Field(1000, ge=10, description="largest page asked of a provider")
    token_key: SecretStr | None = Field(
        None,
        min_length=32,
        description="HMAC key of the page tokens (the platform's signing secret); unset: a "
        "random key per process, so tokens do not survive a restart",
    )

    @model_validator(mode="after")
    def consistent(self) -> SearchSettings:
        names = [self.local_provider] + [p.name for p in self.providers]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"provider names must be unique: {', '.join(sorted(duplicates))} repeated")
        if self.default_limit > self.max_limit:
            raise ValueError("default_limit must not exceed max_limit")
        if self.workers > 1 and self.token_key is None:
            raise ValueError("token_key is needed with several workers: each must accept the others' page tokens")
        return self

    @property
    def base(self) -> str:
        return str(self.public_url).rstrip("/")

    def all_providers(self) -> list[ProviderConfig]:
        catalog = self.peer("catalog")
        local = ProviderConfig(
            name=self.local_provider,
            kind="stac",
            url=catalog.url,
            public_url=catalog.public_url,
            timeout_seconds=self.local_timeout_seconds,
            free_text="filter",
        )
        return [local, *(self._located(p) for p in self.providers if p.enabled)]

    def _located(self, provider: ProviderConfig) -> ProviderConfig:
        """A path (/stac) is relative to the public URL; a platform service there is reached internally."""
        if not provider.url or not provider.url.startswith("/"):
            return provider.model_copy(update={"url": provider.url.rstrip("/") if provider.url else None})
        public = f"{self.base}{provider.url}".rstrip("/")
        for peer in self.peers.values():
            internal = peer.internal(public)
            if internal is not None:
                return provider.model_copy(update={"url": internal.rstrip("/"), "public_url": public})
        return provider.model_copy(update={"url": public})

    @property
    def thesaurus(self) -> str:
        return self.peer("thesaurus").url

    def destinations(self) -> list[str]:
        """Everything this service may call: the providers' roots and the thesaurus."""
        return [*(p.url for p in self.all_providers() if p.kind == "stac" and p.url), self.thesaurus]
