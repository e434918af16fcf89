"""The collection-search routes: `GET /collections` (STAC collection search), `/collection-queryables`, `/suggest`.

Handlers parse, call discovery/expansion, answer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from cachetools import TTLCache
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from eolake_search import discovery
from eolake_search.engine import Query as TextQuery
from eolake_search.expansion import Expansion, expand, unexpanded
from eolake_search.federation import BadToken, decode_token, encode_token, fingerprint
from eolake_search.responses import SchemaResponse

COLLECTION_CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0-rc.1/collection-search",
    "https://api.stacspec.org/v1.0.0-rc.1/collection-search#free-text",
    "https://api.stacspec.org/v1.0.0-rc.1/collection-search#filter",
    "https://api.stacspec.org/v1.0.0-rc.1/collection-search#sort",
    "https://api.stacspec.org/v1.0.0-rc.1/collection-search#fields",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/simple-query",
]
# answers reused (next pages, the same search again); the thesaurus's answers are kept as long (expansion.LOOKUPS)
ANSWERS_KEPT, ANSWERS_SECONDS = 256, 300
COLLECTION_KEYS = {
    "q",
    "filter",
    "filter-lang",
    "filter_lang",
    "sortby",
    "fields",
    "limit",
    "token",
    "expand",
    "lang",
    "depth",
    "bbox",
    "facets",
}


def flag(value: Any, default: bool = True) -> bool:
    return default if value is None else str(value).lower() not in ("false", "0", "no")


def parse_sortby(value: str | None) -> list[tuple[str, bool]]:
    out = []
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        descending = part.startswith("-")
        key = part.lstrip("+-")
        if key not in discovery.SORTABLE:
            raise HTTPException(400, f"sortby: {key!r} is not sortable; use {', '.join(sorted(discovery.SORTABLE))}")
        out.append((key, descending))
    return out


def parse_fields(value: str | None) -> tuple[list[str], list[str]]:
    parts = [p.strip() for p in (value or "").split(",") if p.strip()]
    return [p.lstrip("+") for p in parts if not p.startswith("-")], [p[1:] for p in parts if p.startswith("-")]


def overlaps(record: dict, box: list[float]) -> bool:
    try:
        west, south, east, north = record["extent"]["spatial"]["bbox"][0][:4]
    except (KeyError, IndexError, TypeError, ValueError):
        return True  # no usable extent: the collection does not say where it is, keep it
    half = len(box) // 2
    return not (box[half] < west or box[0] > east or box[half + 1] < south or box[1] > north)


def install(app: FastAPI, settings, token_key: bytes, parse_cql2, parse_bbox, collection_links) -> None:
    base = settings.service_url

    async def expansion_for(text: str, params: dict) -> tuple[Expansion, int]:
        depth = _int(params.get("depth", settings.expansion_depth), "depth")
        if not 0 <= depth <= 3:
            raise HTTPException(400, "depth must be between 0 and 3")
        if not flag(params.get("expand")):
            return unexpanded("expand=false"), depth
        return await expand(
            app.state.client,
            settings.thesaurus,
            text,
            params.get("lang"),
            depth,
            settings.thesaurus_timeout_seconds,
            settings.max_expanded_terms,
            settings.catalog_languages,
        ), depth

    async def text_query(params: dict) -> tuple[TextQuery | None, dict | None]:
        text = " ".join(_strings(params.get("q")))
        if not text.strip():
            return None, None
        query = TextQuery.parse(text)
        found, depth = await expansion_for(text, params)
        found.apply(query)
        report = found.report(depth)
        if not found.applied and found.notice == "expand=false":
            report = {"applied": False, "reason": "expand=false"}
        return query, report

    app.state.text_query = text_query
    answers = Answers()

    async def searched(params: dict, query_id: str, cql, sortby):
        index = await app.state.catalog.current()
        return await answers.answer(
            index, (app.state.catalog.version, query_id), lambda: text_query(params), cql, sortby
        )

    @app.get(
        "/collections",
        summary="collection search: free text (thesaurus-expanded), CQL2 filter, sort, fields, "
        "facets, paging over every provider's collections",
    )
    async def collections(request: Request):
        params = {k: request.query_params.get(k) for k in request.query_params}
        limit = _limit(params, settings)
        sortby, (include, exclude) = parse_sortby(params.get("sortby")), parse_fields(params.get("fields"))
        cql = (
            _compiled(parse_cql2(params["filter"], params.get("filter-lang") or params.get("filter_lang"))[0])
            if params.get("filter")
            else None
        )
        box = parse_bbox(params["bbox"]) if params.get("bbox") else None
        query_id = fingerprint({k: v for k, v in params.items() if k not in ("token", "limit", "fields", "facets")})
        offset = _offset(params.get("token"), token_key, query_id)
        query, expansion, found = await searched(params, query_id, cql, sortby)
        records = [r for r in found.records if box is None or overlaps(r, box)]
        page = records[offset : offset + limit]
        out = [
            discovery.select_fields(_with_score(collection_links(r, base), found.scores, query), include, exclude)
            for r in page
        ]
        links = _page_links(base, params, offset, limit, len(records), query_id, token_key)
        answer = {
            "collections": out,
            "links": links,
            "numberMatched": len(records),
            "numberReturned": len(out),
            "federation": app.state.catalog.status,
        }
        if flag(params.get("facets")):
            answer["facets"] = discovery.facets(records) if box else found.facets
        if expansion is not None:
            answer["expansion"] = expansion
        return JSONResponse(answer)  # plain JSON already: FastAPI's encoder would walk it again on every search

    @app.get("/collection-queryables", summary="what collection-search filters may name", response_class=SchemaResponse)
    async def collection_queryables():
        return SchemaResponse(
            {
                "$schema": "https://json-schema.org/draft/2019-09/schema",
                "$id": f"{base}/collection-queryables",
                "type": "object",
                "title": "Queryables of the collection search",
                "properties": discovery.QUERYABLES,
                "additionalProperties": False,
            }
        )

    @app.get("/suggest", summary="autocomplete: thesaurus concepts and dataset titles for what the user is typing")
    async def suggest(
        q: Annotated[str, Query(min_length=1, max_length=100)],
        lang: str | None = None,
        limit: Annotated[int, Query(ge=1, le=50)] = 10,
    ):
        index = await app.state.catalog.current()
        datasets = [
            {"label": r.get("title") or r["id"], "kind": "dataset", "id": r["id"]}
            for r in index.titles_starting(q, limit)
        ]
        concepts, notice = await suggested_concepts(app.state.client, settings, q, lang, limit)
        answer = {"q": q, "suggestions": [*concepts, *datasets][:limit]}
        if notice:
            answer["notice"] = notice
        return answer


class Answers:
    """Searches answered lately: the query, its expansion report and every record it found, reused for the next
    page of the same search (and the same search asked again) while the catalog's index is the same one. An answer
    searched without the thesaurus because it was down is not kept."""

    def __init__(self, kept: int = ANSWERS_KEPT, seconds: float = ANSWERS_SECONDS):
        self.kept: TTLCache = TTLCache(maxsize=kept, ttl=seconds)

    async def answer(
        self, index, key: tuple, text_query: Callable[[], Awaitable[tuple]], cql, sortby
    ) -> tuple[TextQuery | None, dict | None, discovery.Found]:
        if (kept := self.kept.get(key)) is not None and kept[2].index is index:
            return kept
        query, expansion = await text_query()
        answer = (query, expansion, discovery.find(index, query, cql, sortby))
        if expansion is None or expansion.get("applied") or expansion.get("reason") == "expand=false":
            self.kept[key] = answer
        return answer


def _limit(params: dict, settings) -> int:
    """The page size asked, capped at the maximum; unknown parameters refused."""
    unknown = set(params) - COLLECTION_KEYS
    if unknown:
        raise HTTPException(400, f"unknown collection-search parameters: {', '.join(sorted(unknown))}")
    limit = _int(params.get("limit", settings.default_limit), "limit")
    if limit < 1:
        raise HTTPException(400, "limit must be at least 1")
    return min(limit, settings.max_limit)


async def suggested_concepts(client, settings, q: str, lang: str | None, limit: int) -> tuple[list[dict], str | None]:
    """The thesaurus's concepts for what is typed (half the suggestions at most), or why there are none."""
    try:
        params = {"q": q, "limit": limit, **({"lang": lang} if lang else {})}
        response = await client.get(
            f"{settings.thesaurus}/autocomplete", params=params, timeout=settings.thesaurus_timeout_seconds
        )
        response.raise_for_status()
        hits = response.json().get("suggestions") or []
    except Exception as exc:
        return [], f"thesaurus unavailable, concepts not suggested: {type(exc).__name__}"
    seen, out = set(), []
    for hit in hits:
        if hit.get("label") and hit["label"].lower() not in seen:
            seen.add(hit["label"].lower())
            out.append(
                {
                    "label": hit["label"],
                    "kind": "concept",
                    "uri": hit.get("uri"),
                    "vocab": hit.get("vocab"),
                    "lang": hit.get("lang"),
                }
            )
    return out[: max(1, limit // 2)], None


def _compiled(filter_json: dict):
    import cql2

    return cql2.parse_json(json.dumps(filter_json))


def _with_score(record: dict, scores: dict, query) -> dict:
    return {**record, "search:score": scores.get(record["id"])} if query is not None else record


def _page_links(base: str, params: dict, offset: int, limit: int, matched: int, query_id: str, key: bytes) -> list:
    keep = {k: v for k, v in params.items() if k != "token"}
    query = f"?{urlencode(params)}" if params else ""
    links = [
        {"rel": "self", "type": "application/json", "href": f"{base}/collections{query}"},
        {"rel": "root", "type": "application/json", "href": f"{base}/"},
    ]
    for rel, start in (("next", offset + limit), ("prev", offset - limit)):
        if (rel == "next" and start < matched) or (rel == "prev" and offset > 0):
            token = encode_token({"p": {}, "q": query_id, "o": max(start, 0)}, key)
            links.append(
                {
                    "rel": rel,
                    "type": "application/json",
                    "href": f"{base}/collections?{urlencode({**keep, 'token': token})}",
                }
            )
    return links


def _offset(token: str | None, key: bytes, query_id: str) -> int:
    if not token:
        return 0
    try:
        state = decode_token(token, key)
    except BadToken as exc:
        raise HTTPException(400, str(exc)) from exc
    if state.get("q") != query_id or not isinstance(state.get("o"), int):
        raise HTTPException(400, "the page token belongs to another search")
    return state["o"]


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise HTTPException(400, f"{name} must be an integer") from exc
