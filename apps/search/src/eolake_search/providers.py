"""Provider access: STAC APIs over httpx (async, one timeout each), EODAG built-in providers through EODAG.

A cursor is where a provider's result stream resumes: None (the start) or the provider's own `next` link (a GET
href, or a POST body to merge into the search body), kept relative to the provider's root. A next link that points
anywhere but below that root ends the stream with an error: nothing but the configured root is ever called.
Upstream error bodies are logged, never returned to the caller.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import orjson

from eolake_kit.outbound import AnswerTooLarge, DestinationRefused
from eolake_kit.settings import Peer
from eolake_kit.stac import next_link
from eolake_search.settings import ProviderConfig

log = logging.getLogger(__name__)
JSON_BODY = {"content-type": "application/json"}


class ProviderError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class Page:
    items: list[dict]
    next: dict | None
    matched: int | None
    extra: dict = field(default_factory=dict)


def describe(exc: BaseException) -> str:
    """What a caller may learn of a failed provider call: the kind of failure, never an address or a body."""
    if isinstance(exc, ProviderError):
        return str(exc)
    if isinstance(exc, DestinationRefused):
        return "refused: not a configured destination"
    if isinstance(exc, AnswerTooLarge):
        return f"refused: {exc}"
    return type(exc).__name__


class StacProvider:
    def __init__(self, config: ProviderConfig, client: httpx.AsyncClient):
        self.config, self.client = config, client
        self.name, self.url = config.name, (config.url or "").rstrip("/")
        self.root = Peer(url=self.url, public_url=config.public_url)
        self.search_url = httpx.URL(f"{self.url}/search")  # parsed once: httpx's URL parsing is not cheap

    async def search(self, body: dict, cursor: dict | None, limit: int) -> Page:
        if cursor and "href" in cursor:
            parts = urlsplit(self.url + cursor["href"])
            query = [(k, v) for k, v in parse_qsl(parts.query) if k != "limit"] + [("limit", str(limit))]
            response = await self.client.get(urlunsplit(parts._replace(query=urlencode(query))))
        else:
            payload = {**body, "limit": limit}
            if cursor and "body" in cursor:
                payload = (
                    {**payload, **cursor["body"]} if cursor.get("merge", True) else {**cursor["body"], "limit": limit}
                )
            path = (cursor or {}).get("post", "/search")
            url = self.search_url if path == "/search" else f"{self.url}{path}"
            response = await self.client.post(url, content=orjson.dumps(payload), headers=JSON_BODY)
        data = self._json(response)
        return Page(data.get("features") or [], self._next_cursor(data), _matched(data))

    def _next_cursor(self, data: dict) -> dict | None:
        link = next_link(data)
        if link is None:
            return None
        rest = self.root.internal(link.href)
        if rest is None:
            log.warning("provider next link outside its root", extra={"provider": self.name})
            raise ProviderError("the provider's next link points outside its root")
        rest = rest[len(self.url) :]
        if link.method == "POST":
            return {"body": link.body or {}, "merge": link.merge, "post": rest.split("?", 1)[0]}
        return {"href": rest}

    async def get(self, path: str, params: dict | None = None) -> dict | None:
        response = await self.client.get(f"{self.url}{path}", params=params)
        if response.status_code == 404:
            return None
        return self._json(response)

    def _json(self, response: httpx.Response) -> dict:
        if response.status_code >= 400:
            log.warning(
                "provider error",
                extra={"provider": self.name, "status": response.status_code, "body": response.text[:300]},
            )
            raise ProviderError(f"the provider answered HTTP {response.status_code}", response.status_code)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise ProviderError("the provider did not answer JSON") from exc
        if not isinstance(data, dict):
            raise ProviderError("the provider answered JSON that is not an object")
        return data


def _matched(data: dict) -> int | None:
    if isinstance(data.get("numberMatched"), int):
        return data["numberMatched"]
    context = data.get("context") or {}
    return context.get("matched") if isinstance(context.get("matched"), int) else None


class EodagProvider:
    """An EODAG built-in provider (its own configuration and credentials, from EODAG's usual env vars).

    EODAG runs offline at start: a private config dir, the external collections list pointed at an empty local
    file, and only this provider whitelisted; searches run in a thread (EODAG is synchronous).
    """

    def __init__(self, config: ProviderConfig, storage: Path):
        self.config, self.name = config, config.name
        self.cfg_dir = Path(storage) / "search" / "eodag"
        self._dag = None

    def dag(self):
        if self._dag is None:
            self._dag = offline_gateway(self.cfg_dir, [self.name])
        return self._dag

    async def search(self, body: dict, cursor: dict | None, limit: int) -> Page:
        page = (cursor or {}).get("page", 1)
        collections = body.get("collections") or []
        if len(collections) != 1:
            raise ProviderError("an EODAG provider is searched one collection at a time: give exactly one")
        kwargs: dict[str, Any] = {
            "provider": self.name,
            "collection": collections[0],
            "page": page,
            "items_per_page": limit,
        }
        if body.get("bbox"):
            kwargs["geom"] = body["bbox"][:2] + body["bbox"][-3:-1] if len(body["bbox"]) == 6 else body["bbox"]
        if body.get("datetime") and "/" in body["datetime"]:
            start, end = body["datetime"].split("/", 1)
            kwargs.update({k: v for k, v in (("start", start), ("end", end)) if v and v != ".."})
        result = await asyncio.to_thread(lambda: self.dag().search(**kwargs))
        features = result.as_geojson_object().get("features", [])
        return Page(
            features, {"page": page + 1} if len(features) >= limit else None, getattr(result, "number_matched", None)
        )

    async def get(self, path: str, params: dict | None = None) -> dict | None:
        return None


def offline_gateway(cfg_dir: Path, whitelist: list[str], stac_providers: dict[str, str] | None = None):
    """An EODataAccessGateway that reads nothing from the network at start; `stac_providers` (name → STAC API
    root) are added as custom StacSearch providers."""
    from eodag import EODataAccessGateway
    from eodag.config import EODAGSettings

    cfg_dir = Path(cfg_dir)
    cfg_dir.mkdir(parents=True, exist_ok=True)
    empty = cfg_dir / "no-external-collections.json"
    if not empty.exists():
        empty.write_text("{}")
    (cfg_dir / "eodag.yml").touch()
    names = list(whitelist) + list(stac_providers or {})
    settings = EODAGSettings(cfg_dir=cfg_dir, ext_collections_cfg_uri=str(empty), providers_whitelist=names or ["none"])
    dag = EODataAccessGateway(settings=settings)
    for name, url in (stac_providers or {}).items():
        dag.add_provider(name, url=f"{url.rstrip('/')}/search", search={"type": "StacSearch"})
    return dag


def make_provider(config: ProviderConfig, client: httpx.AsyncClient, storage: Path):
    return StacProvider(config, client) if config.kind == "stac" else EodagProvider(config, storage)
