"""Federated search: a STAC API over the local catalog and the configured providers, queried in parallel.

Settings → dependencies (app.state, read through the routers' overridable dependencies) → cores without a web
framework (item_search, stac_request, discovery, federation) → routers (item_routes, collection_api)."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from eolake_kit import install_kit
from eolake_kit.outbound import async_client
from eolake_search import collection_api, item_routes
from eolake_search.discovery import Catalog
from eolake_search.engine import Query as TextQuery
from eolake_search.expansion import Expansion
from eolake_search.expansion import expand as thesaurus_expand
from eolake_search.federation import BACKENDS
from eolake_search.item_routes import collection_links
from eolake_search.item_search import FederatedItems
from eolake_search.providers import make_provider
from eolake_search.settings import SearchSettings
from eolake_search.stac_request import BadSearch, bbox, cql2_json

log = logging.getLogger(__name__)
STAC = "https://api.stacspec.org/v1.0.0"
CONFORMANCE = [
    f"{STAC}/core",
    f"{STAC}/collections",
    f"{STAC}/item-search",
    f"{STAC}/item-search#sort",
    f"{STAC}/item-search#fields",
    f"{STAC}/item-search#query",
    f"{STAC}/ogcapi-features",
    f"{STAC}/ogcapi-features#sort",
    f"{STAC}/ogcapi-features#fields",
    f"{STAC}/ogcapi-features#query",
    "https://api.stacspec.org/v1.0.0-rc.1/item-search#free-text",
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]


def create_app(settings: SearchSettings | None = None) -> FastAPI:
    settings = settings or SearchSettings()
    configs = settings.all_providers()
    token_key = settings.token_key.get_secret_value().encode() if settings.token_key else secrets.token_bytes(32)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with async_client(
            settings.destinations(),
            follow_redirects=True,
            timeout=httpx.Timeout(120, connect=5),
            read_after_to=[peer.url for peer in settings.peers.values()],  # the platform's catalog, not providers
        ) as client:
            app.state.client = client
            app.state.providers = {c.name: make_provider(c, client, settings.storage_path) for c in configs}
            app.state.catalog = await asyncio.to_thread(
                Catalog, configs, provider_collections, settings.catalog_ttl_seconds
            )
            # What start-up built lives as long as the process: out of the collector's sight (its garbage collected
            # first), a full collection walks only what searches allocate (without, one took ~150 ms here).
            gc.collect()
            gc.freeze()
            yield

    app = FastAPI(
        title="eolake federated search",
        version="0.1.0",
        lifespan=lifespan,
        description="One STAC API over several providers, queried in parallel, with thesaurus expansion",
    )
    item_search = [c.name for c in configs if c.item_search]
    base = app.state.base_url = settings.service_url

    def providers() -> dict:
        return app.state.providers

    @app.get("/")
    async def landing():
        return landing_page(configs, base)

    @app.get("/conformance")
    async def conformance():
        return {"conformsTo": CONFORMANCE + collection_api.COLLECTION_CONFORMANCE}

    async def provider_collections(name: str) -> list[dict] | None:
        """A STAC provider's collections for the dataset catalog; None when it cannot answer now."""
        answers, _ = await gather("/collections", {"limit": 1000}, only=[name])
        data = answers.get(name)
        return data.get("collections") if isinstance(data, dict) and isinstance(data.get("collections"), list) else None

    def gather(path: str, params: dict | None = None, only: list[str] | None = None):
        return app.state.items.gather(path, params, only)

    collection_api.install(app, settings, token_key, lambda value, lang: cql2_json(value, lang), bbox, collection_links)
    app.include_router(item_routes.router)

    async def expander(q: list[str], lang: str | None, depth: int, do_expand: bool):
        if not do_expand:
            return q, {"applied": False, "reason": "expand=false"}, await matching_collections(q)
        return await expand(q, lang, depth)

    app.state.items = FederatedItems(configs, providers, expander, token_key, settings)

    async def expand(q: list[str], lang: str | None, depth: int) -> tuple[list[str], dict, list[str]]:
        """Terms for the providers' item search, the report, and the collections whose title or keywords match
        (their items match too: items rarely carry the words users type, their collections do)."""
        found = await thesaurus_expand(
            app.state.client,
            settings.thesaurus,
            " ".join(q),
            lang,
            depth,
            settings.thesaurus_timeout_seconds,
            settings.max_expanded_terms,
            settings.catalog_languages,
            related=False,  # each term is ORed into the providers' filters: related concepts would drown the items
        )
        # Capped: each term becomes clauses of the providers' filters, which have their own bounds.
        terms = list(dict.fromkeys([*q, *found.terms]))[: max(len(q), settings.max_expanded_terms)]
        return (
            terms,
            {**found.report(depth), **({"terms": terms} if found.applied else {})},
            await matching_collections(q, found),
        )

    async def matching_collections(q: list[str], found: Expansion | None = None) -> list[str]:
        query = TextQuery.parse(" ".join(q))
        if found is not None:
            found.apply(query, narrower=False)
        index = await app.state.catalog.current()
        searchable = set(item_search)
        return [
            r["id"]
            for r, _ in index.rank(query, fields=("title", "keywords"))
            if searchable & set(r.get(BACKENDS) or [])
        ][: settings.max_expanded_terms]

    async def ready_local() -> None:
        local = providers()[settings.local_provider]
        await asyncio.wait_for(local.get("/conformance"), settings.readiness_timeout)

    return install_kit(app, settings, checks={"local-catalog": ready_local}, status_codes={BadSearch: 400})


def landing_page(configs: list, base: str) -> dict:
    return {
        "type": "Catalog",
        "stac_version": "1.0.0",
        "id": "eolake-search",
        "title": "eolake federated search",
        "description": "STAC API over " + ", ".join(c.name for c in configs),
        "conformsTo": CONFORMANCE,
        "providers": [{"name": c.name, "kind": c.kind, "timeout_seconds": c.timeout_seconds} for c in configs],
        "links": [
            {"rel": "self", "type": "application/json", "href": f"{base}/"},
            {"rel": "root", "type": "application/json", "href": f"{base}/"},
            {"rel": "conformance", "type": "application/json", "href": f"{base}/conformance"},
            {"rel": "data", "type": "application/json", "href": f"{base}/collections"},
            {
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                "type": "application/schema+json",
                "title": "collection-search queryables",
                "href": f"{base}/collection-queryables",
            },
            {"rel": "suggest", "type": "application/json", "href": f"{base}/suggest"},
            {"rel": "search", "type": "application/geo+json", "href": f"{base}/search", "method": "GET"},
            {"rel": "search", "type": "application/geo+json", "href": f"{base}/search", "method": "POST"},
            {
                "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                "type": "application/schema+json",
                "href": f"{base}/queryables",
            },
            {"rel": "service-desc", "type": "application/json", "href": f"{base}/openapi.json"},
        ],
    }
