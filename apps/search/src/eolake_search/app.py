"""Federated search: a STAC API over the local catalog and the configured providers, queried in parallel."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from contextlib import asynccontextmanager
from functools import partial
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI, HTTPException, Request

from eolake_kit import install_kit
from eolake_kit.datetimes import check_interval
from eolake_kit.outbound import async_client
from eolake_kit.refs import StacId, segment
from eolake_search import collection_api
from eolake_search.discovery import Catalog
from eolake_search.engine import Query as TextQuery
from eolake_search.expansion import Expansion
from eolake_search.expansion import expand as thesaurus_expand
from eolake_search.federation import (
    BACKENDS,
    FAILED_EARLIER,
    BadToken,
    EveryProviderFailed,
    ProviderRun,
    cascade_of,
    cascade_report,
    decode_token,
    encode_token,
    failed_providers,
    fetch,
    fingerprint,
    first_answering,
    merge,
    next_state,
    skip_reason,
)
from eolake_search.providers import describe, make_provider
from eolake_search.settings import SearchSettings

try:  # the CQL2 parser comes with the dev/catalog environment; without it filters are forwarded unchecked
    import cql2
except ImportError:  # pragma: no cover - exercised by the image build check
    cql2 = None

log = logging.getLogger(__name__)
PROVIDERS_RETRY_SECONDS = "5"  # a search no provider answered: try again then (a provider's restart, a blip)
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0-rc.1/item-search#free-text",
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]
SEARCH_KEYS = {"collections", "ids", "bbox", "intersects", "datetime", "limit", "q", "filter", "filter-lang",
               "filter_lang", "token", "providers", "expand", "lang", "depth"}


def create_app(settings: SearchSettings | None = None) -> FastAPI:
    settings = settings or SearchSettings()
    configs = settings.all_providers()
    token_key = settings.token_key.get_secret_value().encode() if settings.token_key else secrets.token_bytes(32)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with async_client(settings.destinations(), follow_redirects=True,
                                timeout=httpx.Timeout(120, connect=5)) as client:
            app.state.client = client
            app.state.providers = {c.name: make_provider(c, client, settings.storage_path) for c in configs}
            app.state.catalog = await asyncio.to_thread(Catalog, configs, provider_collections,
                                                        settings.catalog_ttl_seconds)
            yield

    app = FastAPI(title="eolake federated search", version="0.1.0", lifespan=lifespan,
                  description="One STAC API over several providers, queried in parallel, with thesaurus expansion")
    timeouts = {c.name: c.timeout_seconds for c in configs}
    restrict = {c.name: c.collections for c in configs}
    free_text = {c.name: c.free_text for c in configs}
    item_search = [c.name for c in configs if c.item_search]
    base = settings.service_url

    def providers() -> dict:
        return app.state.providers

    @app.get("/")
    async def landing():
        return {"type": "Catalog", "stac_version": "1.0.0", "id": "eolake-search", "title": "eolake federated search",
                "description": "STAC API over " + ", ".join(c.name for c in configs), "conformsTo": CONFORMANCE,
                "providers": [{"name": c.name, "kind": c.kind, "timeout_seconds": c.timeout_seconds} for c in configs],
                "links": [
                    {"rel": "self", "type": "application/json", "href": f"{base}/"},
                    {"rel": "root", "type": "application/json", "href": f"{base}/"},
                    {"rel": "conformance", "type": "application/json", "href": f"{base}/conformance"},
                    {"rel": "data", "type": "application/json", "href": f"{base}/collections"},
                    {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "type": "application/schema+json",
                     "title": "collection-search queryables", "href": f"{base}/collection-queryables"},
                    {"rel": "suggest", "type": "application/json", "href": f"{base}/suggest"},
                    {"rel": "search", "type": "application/geo+json", "href": f"{base}/search", "method": "GET"},
                    {"rel": "search", "type": "application/geo+json", "href": f"{base}/search", "method": "POST"},
                    {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "type": "application/schema+json",
                     "href": f"{base}/queryables"},
                    {"rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.0",
                     "href": f"{base}/openapi.json"}]}

    @app.get("/conformance")
    async def conformance():
        return {"conformsTo": CONFORMANCE + collection_api.COLLECTION_CONFORMANCE}

    async def provider_collections(name: str) -> list[dict] | None:
        """A STAC provider's collections for the dataset catalog; None when it cannot answer now."""
        answers, _ = await gather("/collections", {"limit": 1000}, only=[name])
        data = answers.get(name)
        return data.get("collections") if isinstance(data, dict) and isinstance(data.get("collections"), list) \
            else None

    async def gather(path: str, params: dict | None = None, only: list[str] | None = None) -> tuple[dict, dict]:
        async def one(name: str):
            start = time.perf_counter()
            try:
                data = await asyncio.wait_for(providers()[name].get(path, params), timeouts[name])
                return name, data, {"status": "ok", "ms": round((time.perf_counter() - start) * 1000, 1)}
            except TimeoutError:
                status = {"status": "timeout", "error": f"no answer within {timeouts[name]:g} s"}
            except Exception as exc:
                status = {"status": "error", "error": describe(exc)}
            return name, None, {**status, "ms": round((time.perf_counter() - start) * 1000, 1)}
        results = await asyncio.gather(*(one(n) for n in (only or providers())))
        return {n: d for n, d, _ in results}, {n: s for n, _, s in results}

    collection_api.install(app, settings, token_key, _cql2, _bbox, _collection_links)

    @app.get("/collections/{collection_id}")
    async def collection(collection_id: StacId):
        """The providers' own record when a STAC provider serves it, else the harmonised one (EODAG metadata)."""
        only = [n for n in item_search if not restrict[n] or collection_id in restrict[n]]
        answers, status = await gather(f"/collections/{segment(collection_id)}", only=only)
        found = [(n, d) for n, d in answers.items() if d]
        if found:
            return {**_collection_links({**found[0][1], BACKENDS: [n for n, _ in found]}, base), "federation": status}
        known = [r for r in (await app.state.catalog.current()).records if r["id"] == collection_id]
        if not known:
            raise HTTPException(404, f"no provider has the collection {collection_id!r}")
        return {**_collection_links(known[0], base), "federation": status}

    @app.get("/collections/{collection_id}/items")
    async def items(collection_id: StacId, request: Request):
        params = _query_params(request)
        params["collections"] = [collection_id]
        return await run_search(params, request, method="GET", path=f"/collections/{segment(collection_id)}/items")

    @app.get("/queryables")
    async def queryables():
        answers, status = await gather("/queryables")
        props: dict[str, Any] = {}
        for data in answers.values():
            props.update({k: v for k, v in ((data or {}).get("properties") or {}).items() if k not in props})
        return {"$schema": "https://json-schema.org/draft/2019-09/schema", "$id": f"{base}/queryables",
                "type": "object", "title": "Queryables of every provider", "properties": props,
                "additionalProperties": True, "federation": status}

    @app.get("/search")
    async def search_get(request: Request):
        return await run_search(_query_params(request), request, method="GET", path="/search")

    @app.post("/search", openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "description": "a STAC item search (collections, bbox, datetime, q, filter…)"}}}}})
    async def search_post(request: Request):
        try:
            body = await request.json()
        except ValueError as exc:
            raise HTTPException(400, "the request body is not JSON") from exc
        if not isinstance(body, dict):
            raise HTTPException(400, "the request body must be a JSON object")
        return await run_search(body, request, method="POST", path="/search")

    async def expand(q: list[str], lang: str | None, depth: int) -> tuple[list[str], dict, list[str]]:
        """Terms for the providers' item search, the report, and the collections whose title or keywords match
        (their items match too: items rarely carry the words users type, their collections do)."""
        found = await thesaurus_expand(app.state.client, settings.thesaurus, " ".join(q), lang, depth,
                                       settings.thesaurus_timeout_seconds, settings.max_expanded_terms,
                                       settings.catalog_languages)
        # Capped: each term becomes clauses of the providers' filters, which have their own bounds.
        terms = list(dict.fromkeys([*q, *found.terms]))[:max(len(q), settings.max_expanded_terms)]
        return terms, {**found.report(depth), **({"terms": terms} if found.applied else {})}, \
            await matching_collections(q, found)

    async def matching_collections(q: list[str], found: Expansion | None = None) -> list[str]:
        query = TextQuery.parse(" ".join(q))
        if found is not None:
            found.apply(query, narrower=False)
        index = await app.state.catalog.current()
        searchable = set(item_search)
        return [r["id"] for r, _ in index.rank(query, fields=("title", "keywords"))
                if searchable & set(r.get(BACKENDS) or [])][:settings.max_expanded_terms]

    async def run_search(params: dict, request: Request, method: str, path: str) -> dict:
        unknown = set(params) - SEARCH_KEYS - {"sortby", "fields", "query"}
        if unknown:
            raise HTTPException(400, f"unknown search parameters: {', '.join(sorted(unknown))}")
        limit = _int(params.get("limit", settings.default_limit), "limit")
        if limit < 1:
            raise HTTPException(400, "limit must be at least 1")
        limit = min(limit, settings.max_limit)  # as STAC APIs do (the catalog too): a larger limit is capped
        wanted = _list(params.get("providers"))
        bad = [p for p in wanted if p not in providers()]
        if bad:
            raise HTTPException(400, f"unknown provider(s): {', '.join(bad)}; known: {', '.join(providers())}")
        body: dict[str, Any] = {}
        if params.get("collections"):
            body["collections"] = _list(params["collections"])
        if params.get("ids"):
            body["ids"] = _list(params["ids"])
        if params.get("bbox") is not None:
            body["bbox"] = _bbox(params["bbox"])
        if params.get("intersects") is not None:
            if not isinstance(params["intersects"], dict) or "type" not in params["intersects"]:
                raise HTTPException(400, "intersects must be a GeoJSON geometry")
            body["intersects"] = params["intersects"]
        if params.get("datetime"):
            body["datetime"] = _datetime(params["datetime"])
        if params.get("filter") is not None:
            body["filter"], body["filter-lang"] = _cql2(params["filter"],
                                                         params.get("filter-lang") or params.get("filter_lang"))
        for key in ("sortby", "fields", "query"):
            if params.get(key) is not None:
                raise HTTPException(400, f"{key} is not supported by the federated search")
        q = _list(params.get("q"))
        do_expand = str(params.get("expand", "true")).lower() not in ("false", "0", "no")
        depth = _int(params.get("depth", settings.expansion_depth), "depth")
        if not 0 <= depth <= 3:
            raise HTTPException(400, "depth must be between 0 and 3")
        lang = params.get("lang")
        query_id = fingerprint({**body, "q": q, "expand": do_expand, "providers": wanted, "depth": depth})
        previous: dict = {"p": {}}
        if params.get("token"):
            try:
                previous = decode_token(str(params["token"]), token_key)
            except BadToken as exc:
                raise HTTPException(400, str(exc)) from exc
            if previous.get("q") != query_id:
                raise HTTPException(400, "the page token belongs to another search")
        expansion: dict = {"applied": False}
        by_collection: list[str] = []
        if q:
            if do_expand:
                terms, expansion, by_collection = await expand(q, lang, depth)
            else:
                terms, expansion, by_collection = q, {"applied": False, "reason": "expand=false"}, \
                    await matching_collections(q)
            body["q"] = terms
            if by_collection:
                expansion["collections"] = by_collection

        names = [n for n in item_search if not wanted or n in wanted]
        cascade = cascade_of(names, body.get("collections"), settings.priorities, named=bool(wanted))
        skipped: dict[str, dict] = {}
        calls = {}
        for name in names:
            entry = previous["p"].get(name, {})
            if reason := skip_reason(entry):
                skipped[name] = {"status": "skipped", "count": 0, "ms": 0, "reason": reason}
                continue
            provider_body = provider_query(body, free_text[name], by_collection)
            if restrict[name]:
                cols = [c for c in body.get("collections", restrict[name]) if c in restrict[name]]
                if not cols:
                    skipped[name] = {"status": "skipped", "count": 0, "ms": 0, "reason": "collections not served"}
                    continue
                provider_body["collections"] = cols
            calls[name] = partial(fetch, providers()[name], provider_body, entry.get("c"), entry.get("s", 0), limit,
                                  settings.provider_page_max, timeouts[name])
        in_cascade = [(n, calls.pop(n)) for n in cascade if n in calls]
        answers = await asyncio.gather(*(call() for call in calls.values()),
                                       *([first_answering(in_cascade)] if in_cascade else []))
        runs: list[ProviderRun] = [r for a in answers for r in (a if isinstance(a, list) else [a])]
        if runs and all(r.status == "error" and r.http_status == 400 for r in runs):
            raise HTTPException(400, "every provider refused the search: " + runs[0].error)
        try:
            failed = failed_providers(runs, skipped)
        except EveryProviderFailed as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": PROVIDERS_RETRY_SECONDS}) from exc
        features = merge(runs, limit)
        state = next_state(runs, {"p": {**previous["p"], **{n: previous["p"].get(n) or {"done": True}
                                                              for n, s in skipped.items()
                                                              if s["reason"] != FAILED_EARLIER}}},
                           query_id)
        federation = {**{r.name: r.report() for r in runs}, **skipped}
        ok = [r for r in runs if r.status == "ok" and r.page]
        # Exact only for one provider that counted (pgstac counts only with its `context` setting on); otherwise
        # the sum of what each provider reported, or at least what it has shown so far (+1 when it has more).
        exact = len(runs) == len(ok) == 1 and ok[0].page.matched is not None and not previous["p"]
        number_matched = sum(r.estimate() for r in ok) if ok else None
        for feature in features:
            _item_links(feature, base)
        links = [{"rel": "root", "type": "application/json", "href": f"{base}/"}]
        self_params = {k: _param(v) for k, v in params.items() if k != "token"}
        links.append({"rel": "self", "type": "application/geo+json", "href": f"{base}{path}?{urlencode(self_params)}"
                      if method == "GET" else f"{base}{path}"})
        if state is not None:
            token = encode_token(state, token_key)
            if method == "GET":
                links.append({"rel": "next", "type": "application/geo+json", "method": "GET",
                              "href": f"{base}{path}?{urlencode({**self_params, 'token': token})}"})
            else:
                links.append({"rel": "next", "type": "application/geo+json", "method": "POST", "merge": True,
                              "href": f"{base}{path}", "body": {**params, "token": token}})
        out = {"type": "FeatureCollection", "features": features, "links": links, "numberReturned": len(features),
               "context": {"returned": len(features), "limit": limit, "matched": number_matched,
                           "matched_estimate": not exact},
               "federation": federation, "partial": bool(failed), "failed_providers": failed, "expansion": expansion}
        if number_matched is not None:
            out["numberMatched"] = number_matched
        return out | cascade_report(cascade, runs, previous)

    async def ready_local() -> None:
        local = providers()[settings.local_provider]
        await asyncio.wait_for(local.get("/conformance"), settings.readiness_timeout)

    return install_kit(app, settings, checks={"local-catalog": ready_local})


def provider_query(body: dict, mode: str, collections: list[str] | None = None) -> dict:
    """The search body for one provider: `q` as the free-text parameter (quoted phrases), or as a CQL2 filter
    that also takes every item of the collections whose metadata matched."""
    out = dict(body)
    terms = out.pop("q", None)
    if not terms:
        return out
    if mode == "q":
        out["q"] = [f'"{t}"' if " " in t else t for t in terms]
        return out
    keywords = list(dict.fromkeys([*terms, *(t.lower() for t in terms)]))
    ors: list[dict] = [{"op": "a_overlaps", "args": [{"property": "keywords"}, keywords]}]
    for term in terms:
        pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        for prop in ("title", "description"):
            ors.append({"op": "like", "args": [_fold({"property": prop}), _fold(pattern)]})
    if collections:
        ors.append({"op": "in", "args": [{"property": "collection"}, collections]})
    text = {"op": "or", "args": ors}
    out["filter"] = {"op": "and", "args": [out["filter"], text]} if out.get("filter") else text
    out["filter-lang"] = "cql2-json"
    return out


def _fold(arg: Any) -> dict:
    return {"op": "accenti", "args": [{"op": "casei", "args": [arg]}]}


def _query_params(request: Request) -> dict:
    out: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        out[key] = values[0] if len(values) == 1 else ",".join(values)
    return out


def _param(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise HTTPException(400, f"expected a list of strings, got {value!r}")


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise HTTPException(400, f"{name} must be an integer") from exc


def _bbox(value: Any) -> list[float]:
    try:
        box = [float(v) for v in (value.split(",") if isinstance(value, str) else value)]
    except (TypeError, ValueError) as exc:
        raise HTTPException(400, "bbox must be 4 or 6 numbers") from exc
    if len(box) not in (4, 6):
        raise HTTPException(400, "bbox must be 4 or 6 numbers")
    half = len(box) // 2
    west, south, east, north = box[0], box[1], box[half], box[half + 1]
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90 and -90 <= north <= 90):
        raise HTTPException(400, "bbox out of range: longitudes within [-180, 180], latitudes within [-90, 90]")
    if south > north:
        raise HTTPException(400, "bbox: the southern latitude is above the northern one")
    return box


def _datetime(value: Any) -> str:
    if not isinstance(value, str):
        raise HTTPException(400, "datetime must be an RFC 3339 instant or interval")
    try:
        check_interval(value)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return value


def _cql2(value: Any, lang: str | None) -> tuple[dict, str]:
    """Parse the filter with cql2 (text or JSON) and forward it as CQL2 JSON; a syntax error is the client's."""
    if lang not in (None, "cql2-text", "cql2-json"):
        raise HTTPException(400, f"filter-lang must be cql2-text or cql2-json, not {lang!r}")
    if cql2 is None:  # no parser installed: forward as given; a provider's 400 becomes ours when all refuse
        if isinstance(value, dict):
            return value, "cql2-json"
        if lang == "cql2-json":
            try:
                return json.loads(value), "cql2-json"
            except ValueError as exc:
                raise HTTPException(400, "invalid CQL2 filter: not JSON") from exc
        raise HTTPException(400, "cql2-text filters need the CQL2 parser, which this deployment lacks: "
                                 "send the filter as cql2-json")
    try:
        if isinstance(value, dict) or lang == "cql2-json":
            expr = cql2.parse_json(value if isinstance(value, str) else json.dumps(value))
        else:
            expr = cql2.parse_text(str(value))
        expr.validate()
        return expr.to_json(), "cql2-json"
    except HTTPException:
        raise
    except Exception as exc:
        raise HTTPException(400, f"invalid CQL2 filter: {str(exc).strip()[:500]}") from exc


def _collection_links(col: dict, base: str) -> dict:
    cid = segment(str(col.get("id")))
    links = [link for link in col.get("links", []) if link.get("rel") not in ("self", "root", "parent", "items")]
    return {**col, "links": [*links, {"rel": "self", "href": f"{base}/collections/{cid}"},
                             {"rel": "root", "href": f"{base}/"},
                             {"rel": "items", "href": f"{base}/collections/{cid}/items"}]}


def _item_links(item: dict, base: str) -> None:
    """Keep the provider's own self link as `via`; root/parent/collection point into the federated API."""
    links = []
    for link in item.get("links", []):
        if link.get("rel") == "self":
            links.append({**link, "rel": "via"})
        elif link.get("rel") not in ("root", "parent", "collection"):
            links.append(link)
    collection = item.get("collection")
    links += [{"rel": "root", "href": f"{base}/"}]
    if collection:
        href = f"{base}/collections/{segment(str(collection))}"
        links += [{"rel": "collection", "href": href}, {"rel": "parent", "href": href}]
    item["links"] = links
