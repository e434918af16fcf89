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
from fastapi import HTTPException
from json_merge_patch import merge
from pydantic import BaseModel, ValidationError

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


def patched_document(existing: dict, patch: Any, model: type[BaseModel]) -> dict:
    """`existing` with a JSON patch (a list of operations) or a merge patch applied, valid as `model`, or a 400."""
    if isinstance(patch, list):
        patched = jsonpatch.JsonPatch([op.model_dump(mode="json") for op in patch]).apply(existing)
    else:
        patched = merge(existing, patch.model_dump(mode="json"))
    try:
        model.model_validate(patched)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise HTTPException(400, f"the patch leaves an invalid document: {where}: {first['msg']}") from None
    return patched
