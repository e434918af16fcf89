"""The station items of the catalog (a STAC API read over HTTP), kept briefly; one refresh at a time."""

from __future__ import annotations

import asyncio
import time

import httpx

from eolake_kit.stac import next_link
from eolake_timeseries.settings import TimeseriesSettings


class CatalogUnavailable(Exception):
    """The catalog did not answer (or answered nonsense): stations cannot be listed."""


class Stations:
    """The station items of the catalog, kept for `cache_ttl` seconds."""

    def __init__(self, settings: TimeseriesSettings, client: httpx.AsyncClient):
        self.settings, self.client = settings, client
        self.items: dict[str, dict] | None = None
        self.fetched = 0.0
        self.lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self.items is not None and time.monotonic() - self.fetched < self.settings.cache_ttl

    async def all(self) -> dict[str, dict]:
        if self._fresh():
            return self.items  # type: ignore[return-value]
        async with self.lock:
            if not self._fresh():
                self.items = await self._fetch()
                self.fetched = time.monotonic()
            return self.items  # type: ignore[return-value]

    async def ping(self) -> None:
        """Raises unless the catalog's landing page answers (the readiness check)."""
        response = await self.client.get(f"{self.settings.catalog.url}/")
        if response.status_code != 200:
            raise CatalogUnavailable(f"catalog answered {response.status_code}")

    async def _fetch(self) -> dict[str, dict]:
        url: str | None = f"{self.settings.catalog.url}/collections/{self.settings.stations_collection}/items?limit=500"
        items: dict[str, dict] = {}
        for _ in range(self.settings.max_pages):
            if url is None:
                break
            page = await self._page(url)
            if page is None:
                return items  # no stations collection (yet): an empty list, not an outage
            url = self._collect(page, items)
        return items

    async def _page(self, url: str) -> dict | None:
        try:
            response = await self.client.get(url)
        except httpx.HTTPError as exc:
            raise CatalogUnavailable(f"catalog unreachable: {type(exc).__name__}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise CatalogUnavailable(f"catalog answered {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise CatalogUnavailable("catalog answered something that is not JSON") from None

    def _collect(self, page: dict, items: dict[str, dict]) -> str | None:
        """The point features of `page` added to `items`; the next page's (internal) URL."""
        try:
            for feature in page.get("features", []):
                if feature.get("geometry", {}).get("type") == "Point":
                    items[feature["id"]] = feature
            link = next_link(page)
            return self.settings.catalog.internal(link.href) if link and link.method == "GET" else None
        except (KeyError, AttributeError, TypeError):
            raise CatalogUnavailable("catalog answered something that is not a STAC item collection") from None
