"""What a client sends to the catalog, checked before stac-fastapi-pgstac and pgstac see it.

Free text: pgstac turns `q` into a tsquery with its own little syntax, and any `(`, `'`, `:`, `!`, `&` or a word
ending in an accented letter makes PostgreSQL refuse the query (a 500). The text is therefore reduced to what that
syntax reads safely: alternatives (`,` or OR) of words that must all appear, and quoted phrases, each word made of
letters and digits only. (A multilingual search engine replaces this later: issue 13.)
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

import jsonpatch
import orjson
from cql2 import Expr
from fastapi import HTTPException
from json_merge_patch import merge
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eolake_kit.problems import problem
from eolake_kit.stac import collection_problem, item_path, query_filter

WORD = re.compile(r"\w+")
PHRASE_OR_TEXT = re.compile(r'"([^"]*)"|([^"]+)')
ALTERNATIVES = re.compile(r",|\bOR\b", re.IGNORECASE)
OPERATORS = {"and", "or"}
MAX_TERMS = 50


def free_text(q: str | list[str]) -> str:
    """The client's free text as a query pgstac parses safely, or a 400 when it holds no word at all."""
    texts = q if isinstance(q, list) else [q]
    alternatives = [alt for text in texts for alt in _alternatives(text)]
    if not alternatives:
        raise HTTPException(400, "the free-text query q holds no word to search for")
    if sum(len(a) for a in alternatives) > MAX_TERMS:
        raise HTTPException(400, f"the free-text query q holds more than {MAX_TERMS} words")
    return " OR ".join(" AND ".join(terms) for terms in alternatives)


def _alternatives(text: str) -> list[list[str]]:
    """[[term, ...], ...]: the alternatives of one text, each a list of words and quoted phrases."""
    found: list[list[str]] = [[]]
    for phrase, rest in PHRASE_OR_TEXT.findall(text):
        if phrase:
            words = WORD.findall(phrase)
            if words:
                found[-1].append('"' + " ".join(words) + '"')
            continue
        for i, part in enumerate(ALTERNATIVES.split(rest)):
            if i:
                found.append([])
            found[-1] += [w for w in WORD.findall(part) if w.lower() not in OPERATORS]
    return [terms for terms in found if terms]


def json_object(value: str, name: str) -> dict[str, Any]:
    """A JSON object passed in a query parameter (`query`, `intersects`), decoded as stac-fastapi decodes it."""
    try:
        parsed = orjson.loads(unquote_plus(value))
    except orjson.JSONDecodeError:
        raise HTTPException(400, f"{name} must be a JSON object") from None
    if not isinstance(parsed, dict):
        raise HTTPException(400, f"{name} must be a JSON object")
    return parsed


def checked(params: dict[str, Any]) -> dict[str, Any]:
    """The GET parameters of a search, collection or item listing, with `query`, `intersects` and `q` checked."""
    for name in ("query", "intersects"):
        if params.get(name):
            json_object(params[name], name)
    if params.get("q"):
        params = {**params, "q": free_text(params["q"])}
    return params


def writable_geometry(geometry: Any) -> None:
    """A 400 for a GeometryCollection nested in another (RFC 7946 advises against them; PostGIS cannot output them)."""
    if isinstance(geometry, dict) and geometry.get("type") == "GeometryCollection":
        for member in geometry.get("geometries") or []:
            if isinstance(member, dict) and member.get("type") == "GeometryCollection":
                raise HTTPException(400, "a GeometryCollection cannot hold another GeometryCollection")


def writable_collection(collection: dict[str, Any]) -> None:
    """A 400 for a collection without a bounding box or with an unknown partitioning (eolake_kit.stac)."""
    if problem := collection_problem(collection):
        raise HTTPException(400, problem)


def patched_document(existing: dict[str, Any], patch: Any, model: type[BaseModel]) -> dict[str, Any]:
    """`existing` with a JSON patch (a list of operations) or a merge patch applied, valid as `model`, or a 400."""
    if isinstance(patch, list):
        patched: dict[str, Any] = jsonpatch.JsonPatch([op.model_dump(mode="json") for op in patch]).apply(existing)
    else:
        patched = merge(existing, patch.model_dump(mode="json"))
    try:
        model.model_validate(patched)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise HTTPException(400, f"the patch leaves an invalid document: {where}: {first['msg']}") from None
    return patched


def fields_selection(search_request: Any) -> tuple[set[str] | None, set[str]] | None:
    """The `fields` of a search as (include (None: not given), exclude) item paths, or None (whole items)."""
    fields = getattr(search_request, "fields", None)
    if fields is None or "fields" not in search_request.model_fields_set:  # stac-fastapi's default: whole items
        return None
    include = {item_path(f) for f in fields.include or ()} if "include" in fields.model_fields_set else None
    return include, {item_path(f) for f in fields.exclude or ()} - (include or set())


def query_into_filter(query: Any, current: Any, lang: str | None) -> dict[str, Any]:
    """The query extension as a CQL2 JSON filter joined to the search's own filter (text or JSON): pgstac's query
    lacks startsWith, endsWith, contains and in, and its model refuses them."""
    try:
        extra = query_filter(query)
        if isinstance(current, str):
            current = orjson.loads(current) if lang == "cql2-json" else Expr(current).to_json()
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    except Exception as exc:  # cql2 raises a bare Exception on a parse error
        raise HTTPException(400, f"Invalid filter: {exc}") from None
    return {"op": "and", "args": [current, extra]} if current else extra


def query_params_as_filter(params: dict[str, Any]) -> dict[str, Any]:
    """GET parameters with `query` moved into `filter_expr` (CQL2 JSON)."""
    if not params.get("query"):
        return params
    combined = query_into_filter(
        json_object(params["query"], "query"), params.get("filter_expr"), params.get("filter_lang")
    )
    return {**params, "query": None, "filter_expr": orjson.dumps(combined).decode(), "filter_lang": "cql2-json"}


class SearchBodyMiddleware:
    """POST search bodies as stac-fastapi-pgstac reads them: one collection named as a string (`"collections": "a"`,
    which some clients send) becomes the list of it, and `query` becomes part of the CQL2 filter (see
    query_into_filter); any other body passes unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/search"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        try:
            body = _normalised(b"".join(chunks))
        except HTTPException as refused:  # outside the routes: no exception handler would make it a problem
            return await problem(refused.status_code, refused.detail)(scope, receive, send)
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        # The same scope, changed in place: the router records the matched route in it for the outer middleware.
        scope["headers"] = [*headers, (b"content-length", str(len(body)).encode())]
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _normalised(body: bytes) -> bytes:
    if b'"collections"' not in body and b'"query"' not in body:
        return body
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body  # the route's parser answers
    if not isinstance(document, dict):
        return body
    if isinstance(document.get("collections"), str):
        document["collections"] = [c.strip() for c in document["collections"].split(",") if c.strip()]
    if document.get("query"):
        lang = document.get("filter-lang") or document.get("filter_lang")
        document["filter"] = query_into_filter(document.pop("query"), document.get("filter"), lang)
        document.pop("filter_lang", None)
        document["filter-lang"] = "cql2-json"
    return orjson.dumps(document)
