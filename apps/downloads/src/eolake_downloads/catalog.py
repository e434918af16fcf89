"""The catalog items are resolved in (the `catalog` peer), as the orders' core needs them."""

from __future__ import annotations

import httpx

from eolake_downloads.errors import Refused
from eolake_downloads.settings import DownloadsSettings
from eolake_kit.outbound import async_client
from eolake_kit.refs import segment
from eolake_kit.stac import next_link


class Catalog:
    def __init__(self, settings: DownloadsSettings):
        self.peer = settings.catalog
        self.url = self.peer.url
        # The caller's read-after token goes along: an item ingested just before the order is found.
        self.client = async_client([self.url], timeout=settings.source_timeout, read_after_to=[self.url])

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _send(self, method: str, url: str, body: dict | None = None) -> httpx.Response:
        try:
            return await self.client.request(method, url, json=body)
        except httpx.TransportError as e:
            raise Refused(503, f"catalog unreachable: {e.__class__.__name__}") from None

    async def item(self, collection: str, item_id: str) -> dict:
        resp = await self._send("GET", f"{self.url}/collections/{segment(collection)}/items/{segment(item_id)}")
        if resp.status_code == 404:
            raise Refused(404, f"item {collection}/{item_id} not found in the catalog")
        if resp.status_code != 200:
            raise Refused(502, f"catalog answered {resp.status_code} for {collection}/{item_id}")
        return resp.json()

    async def search(self, body: dict, limit: int) -> list[dict]:
        page = body.get("limit") or 100
        if not isinstance(page, int) or isinstance(page, bool) or page < 1:
            raise Refused(400, "search.limit must be a positive integer")
        body = {**body, "limit": min(page, 100)}
        items: list[dict] = []
        url: str | None = f"{self.url}/search"
        method = "POST"
        while url and len(items) < limit:
            answer = self._page(await self._send(method, url, body if method == "POST" else None))
            items += answer.get("features", [])
            url, method, body = self._next(answer, body)
        if len(items) > limit:
            raise Refused(400, f"the search matches more than {limit} items: narrow it")
        return items

    @staticmethod
    def _page(resp: httpx.Response) -> dict:
        if resp.status_code == 400:
            raise Refused(400, f"catalog rejected the search: {resp.json().get('detail', resp.text)}")
        if resp.status_code != 200:
            raise Refused(502, f"catalog answered {resp.status_code} to the search")
        return resp.json()

    def _next(self, page: dict, body: dict) -> tuple[str | None, str, dict]:
        nxt = next_link(page)
        if not nxt:
            return None, "GET", body
        return self.peer.internal(nxt.href), nxt.method, (nxt.body or body) if nxt.method == "POST" else body
