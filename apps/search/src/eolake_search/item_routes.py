"""Item routes of the federated search (STAC item search, OGC API Features items, queryables): each parses the
request, calls the core (item_search.FederatedItems, reached through the overridable `items` dependency) and
answers GeoJSON."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from eolake_kit.refs import StacId, segment
from eolake_search import stac_request
from eolake_search.federation import BACKENDS, EveryProviderFailed
from eolake_search.item_search import FederatedItems, Page
from eolake_search.responses import GeoJSONResponse, SchemaResponse
from eolake_search.stac_request import BadSearch

PROVIDERS_RETRY_SECONDS = "5"  # a search no provider answered: try again then (a provider's restart, a blip)
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
DEADLINE = {
    "type": "integer",
    "minimum": 1,
    "maximum": stac_request.MAX_DEADLINE_MS,
    "description": "milliseconds the caller waits for every provider (default: each provider's own timeout). Once "
    "they have passed, the page is served from the providers that have answered (at least one), marked `partial`; "
    "the others are reported `late` in `federation` and named in `failed_providers`, on this page and every later "
    "one (the next-page token carries on without them).",
}
POST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "a STAC item search (collections, bbox, intersects, datetime, sortby, fields, "
                    "query, q, filter…)",
                    "properties": {"deadline_ms": DEADLINE},
                }
            }
        },
    }
}
DEADLINE_PARAMETER = {"parameters": [{"name": "deadline_ms", "in": "query", "required": False, "schema": DEADLINE}]}


# async, though they do not wait: FastAPI runs a plain function's dependency in its thread pool, a hand-off per call
async def items(request: Request) -> FederatedItems:
    return request.app.state.items


async def base_url(request: Request) -> str:
    return request.app.state.base_url


Items = Annotated[FederatedItems, Depends(items)]
Base = Annotated[str, Depends(base_url)]
router = APIRouter()


def geojson(content: dict) -> JSONResponse:
    return GeoJSONResponse(content)


async def run(core: FederatedItems, params: dict, page: Page) -> dict:
    settings = core.limits
    request = stac_request.parse(params, settings.default_limit, settings.max_limit, settings.expansion_depth)
    try:
        return await core.search(request, page)
    except EveryProviderFailed as exc:
        if any(r.http_status == 429 for r in exc.runs):  # the providers' rate limit: the caller slows down
            raise HTTPException(429, str(exc), headers={"Retry-After": "1"}) from exc
        raise HTTPException(503, str(exc), headers={"Retry-After": PROVIDERS_RETRY_SECONDS}) from exc


@router.get(
    "/search",
    summary="STAC item search over every provider (GET)",
    openapi_extra=DEADLINE_PARAMETER,
    response_class=GeoJSONResponse,
)
async def search_get(request: Request, core: Items, base: Base):
    params = stac_request.from_query(list(request.query_params.multi_items()))
    return geojson(await run(core, params, Page(base, "/search", "GET", dict(request.query_params))))


@router.post(
    "/search",
    summary="STAC item search over every provider (POST)",
    openapi_extra=POST_BODY,
    response_class=GeoJSONResponse,
)
async def search_post(request: Request, core: Items, base: Base):
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadSearch("the request body is not JSON") from exc
    if not isinstance(body, dict):
        raise BadSearch("the request body must be a JSON object")
    if isinstance(body.get("collections"), str):  # a single collection named as a string: read as the list of it
        body["collections"] = stac_request.strings(body["collections"])
    return geojson(await run(core, body, Page(base, "/search", "POST", body)))


@router.get(
    "/collections/{collection_id}/items",
    summary="the items of a collection, from every provider of it",
    openapi_extra=DEADLINE_PARAMETER,
    response_class=GeoJSONResponse,
)
async def collection_items(collection_id: StacId, request: Request, core: Items, base: Base):
    params = stac_request.from_query(list(request.query_params.multi_items()))
    if "collections" in params:
        raise BadSearch("collections is not a parameter of a collection's items: the path names it")
    path = f"/collections/{segment(collection_id)}/items"
    return geojson(
        await run(core, {**params, "collections": [collection_id]}, Page(base, path, "GET", dict(request.query_params)))
    )


@router.get(
    "/collections/{collection_id}/items/{item_id}",
    summary="one item, from the first provider that has it",
    response_class=GeoJSONResponse,
)
async def collection_item(collection_id: StacId, item_id: StacId, core: Items, base: Base):
    path = f"/collections/{segment(collection_id)}/items/{segment(item_id)}"
    page = await run(core, {"collections": [collection_id], "ids": [item_id], "limit": 1}, Page(base, path, "GET", {}))
    if not page["features"]:
        raise HTTPException(404, f"no provider has the item {item_id!r} in the collection {collection_id!r}")
    return geojson(page["features"][0])


@router.get(
    "/collections/{collection_id}",
    summary="a collection: the providers' own record when a STAC provider "
    "serves it, else the harmonised one (EODAG metadata)",
)
async def collection(collection_id: StacId, request: Request, core: Items, base: Base):
    answers, status = await core.gather(f"/collections/{segment(collection_id)}", only=core.serving(collection_id))
    found = [(n, d) for n, d in answers.items() if d]
    if found:
        return {**collection_links({**found[0][1], BACKENDS: [n for n, _ in found]}, base), "federation": status}
    known = [r for r in (await request.app.state.catalog.current()).records if r["id"] == collection_id]
    if not known:
        raise HTTPException(404, f"no provider has the collection {collection_id!r}")
    return {**collection_links(known[0], base), "federation": status}


@router.get("/queryables", summary="what filters may name, over every provider", response_class=SchemaResponse)
async def queryables(core: Items, base: Base):
    answers, status = await core.gather("/queryables")
    return SchemaResponse(
        {**queryables_document(f"{base}/queryables", "Queryables of every provider", answers), "federation": status},
    )


@router.get(
    "/collections/{collection_id}/queryables",
    summary="what filters on a collection may name; enums narrowed by the values already chosen (?property=value…)",
    response_class=SchemaResponse,
)
async def collection_queryables(collection_id: StacId, request: Request, core: Items, base: Base):
    chosen = dict(request.query_params)
    path = f"/collections/{segment(collection_id)}/queryables"
    answers, status = await core.gather(path, chosen or None, only=core.serving(collection_id))
    if not any(answers.values()):
        if status and all(s.get("http_status") == 400 for s in status.values()):
            raise BadSearch("every provider refused the chosen values: " + ", ".join(sorted(chosen)))
        raise HTTPException(404, f"no provider has the collection {collection_id!r}")
    title = f"Queryables of {collection_id}"
    return SchemaResponse({**queryables_document(f"{base}{path}", title, answers), "federation": status})


def queryables_document(url: str, title: str, answers: dict[str, Any]) -> dict:
    """The providers' queryables as one JSON schema: the first definition of each property, enums united."""
    props: dict[str, Any] = {}
    for data in answers.values():
        for name, definition in ((data or {}).get("properties") or {}).items():
            if name not in props:
                props[name] = dict(definition)
            elif isinstance(props[name].get("enum"), list) and isinstance(definition.get("enum"), list):
                props[name]["enum"] = list(dict.fromkeys([*props[name]["enum"], *definition["enum"]]))
    return {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": url,
        "type": "object",
        "title": title,
        "properties": props,
        "additionalProperties": True,
    }


def collection_links(col: dict, base: str) -> dict:
    cid = segment(str(col.get("id")))
    ours = ("self", "root", "parent", "items", QUERYABLES_REL)
    links = [link for link in col.get("links", []) if link.get("rel") not in ours]
    href = f"{base}/collections/{cid}"
    return {
        **col,
        "links": [
            *links,
            {"rel": "self", "type": "application/json", "href": href},
            {"rel": "root", "type": "application/json", "href": f"{base}/"},
            {"rel": "parent", "type": "application/json", "href": f"{base}/"},
            {"rel": "items", "type": "application/geo+json", "href": f"{href}/items"},
            {"rel": QUERYABLES_REL, "type": "application/schema+json", "href": f"{href}/queryables"},
        ],
    }
