"""A STAC item search as the federated search receives it (GET query or POST body), checked and normalised into the
body sent to every provider; no web framework in here. The STAC part is validated with stac-pydantic's
ExtendedSearch (intersects, sortby, fields, query); eolake's own keys (q, providers, expand, …) beside it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cmp_to_key
from typing import Any

from cachetools import LRUCache
from pydantic import ValidationError
from stac_pydantic.api.search import ExtendedSearch

from eolake_kit.datetimes import check_interval
from eolake_kit.stac import item_path, query_filter

cql2: Any
try:  # the CQL2 parser comes with the dev/catalog environment; without it filters are forwarded unchecked
    import cql2
except ImportError:  # pragma: no cover - exercised by the image build check
    cql2 = None

STAC_KEYS = {"collections", "ids", "bbox", "intersects", "datetime", "limit", "sortby", "fields", "query"}
EOLAKE_KEYS = {
    "q",
    "filter",
    "filter-lang",
    "filter_lang",
    "token",
    "providers",
    "expand",
    "lang",
    "depth",
    "deadline_ms",
}
MAX_DEADLINE_MS = 120_000  # a provider's longest timeout
JSON_GET_KEYS = ("intersects", "query")


class BadSearch(ValueError):
    """The client's search is wrong (a 400), with the reason."""


@dataclass
class SearchRequest:
    body: dict[
        str, Any
    ]  # what every provider is sent (collections, ids, bbox, intersects, datetime, filter, sortby, query)
    limit: int
    q: list[str] = field(default_factory=list)
    expand: bool = True
    depth: int = 1
    lang: str | None = None
    providers: list[str] = field(default_factory=list)
    token: str | None = None
    sortby: list[tuple[str, bool]] = field(default_factory=list)  # (item path, descending)
    fields: tuple[set[str] | None, set[str]] | None = None  # (include (None: not given), exclude); None: whole items
    deadline: float | None = None  # seconds the caller waits for every provider; None: as long as their timeouts


def from_query(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """A GET query in the shape of a POST body: JSON parameters decoded, sortby and fields as their objects."""
    params: dict[str, Any] = {}
    for key, value in pairs:
        params[key] = f"{params[key]},{value}" if key in params else value
    for key in JSON_GET_KEYS:
        if isinstance(params.get(key), str):
            try:
                params[key] = json.loads(params[key])
            except ValueError as exc:
                raise BadSearch(f"{key} must be JSON") from exc
    if isinstance(params.get("bbox"), str):
        params["bbox"] = params["bbox"].split(",")
    if "sortby" in params:
        params["sortby"] = [
            {"field": part.lstrip("+-"), "direction": "desc" if part.startswith("-") else "asc"}
            for part in strings(params["sortby"])
        ]
    if "fields" in params:
        parts = strings(params["fields"])
        params["fields"] = {
            "include": [p.lstrip("+") for p in parts if not p.startswith("-")],
            "exclude": [p[1:] for p in parts if p.startswith("-")],
        }
    return params


def parse(params: dict[str, Any], default_limit: int, max_limit: int, default_depth: int) -> SearchRequest:
    unknown = set(params) - STAC_KEYS - EOLAKE_KEYS
    if unknown:
        raise BadSearch(f"unknown search parameters: {', '.join(sorted(unknown))}")
    limit = integer(params.get("limit", default_limit), "limit")
    if limit < 1:
        raise BadSearch("limit must be at least 1")
    depth = integer(params.get("depth", default_depth), "depth")
    if not 0 <= depth <= 3:
        raise BadSearch("depth must be between 0 and 3")
    stac = _stac_model(params)
    return SearchRequest(
        body=_provider_body(params, stac),
        limit=min(limit, max_limit),  # capped, as STAC says
        q=strings(params.get("q")),
        expand=str(params.get("expand", "true")).lower() not in ("false", "0", "no"),
        depth=depth,
        lang=params.get("lang"),
        providers=strings(params.get("providers")),
        token=str(params["token"]) if params.get("token") else None,
        sortby=[(item_path(s.field), s.direction.value == "desc") for s in stac.sortby or []],
        fields=_fields(params, stac),
        deadline=deadline_seconds(params.get("deadline_ms")),
    )


def deadline_seconds(value: Any) -> float | None:
    if value is None or value == "":
        return None
    milliseconds = integer(value, "deadline_ms")
    if not 1 <= milliseconds <= MAX_DEADLINE_MS:
        raise BadSearch(f"deadline_ms must be between 1 and {MAX_DEADLINE_MS}")
    return milliseconds / 1000


def _stac_model(params: dict[str, Any]) -> ExtendedSearch:
    if "fields" in params and not isinstance(params["fields"], dict):
        raise BadSearch("fields must be an object with include and exclude lists")
    if params.get("intersects") is not None and params.get("bbox") is not None:
        raise BadSearch("intersects and bbox are mutually exclusive")
    subset = {k: params[k] for k in ("intersects", "sortby") if params.get(k) is not None}
    if "fields" in params:
        fields = params["fields"]  # include absent: the whole item less the excludes; null or []: the default set
        subset["fields"] = {
            "includes": (fields.get("include") or []) if "include" in fields else None,
            "excludes": fields.get("exclude"),
        }
    try:
        return ExtendedSearch.model_validate(subset)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][:3])
        raise BadSearch(f"{where}: {first['msg']}") from None


def _provider_body(params: dict[str, Any], stac: ExtendedSearch) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key in ("collections", "ids"):
        if params.get(key):
            body[key] = strings(params[key])
    if params.get("bbox") is not None:
        if not isinstance(params["bbox"], list):
            raise BadSearch("bbox must be an array of 4 or 6 numbers")
        body["bbox"] = bbox(params["bbox"])
    if stac.intersects is not None:
        body["intersects"] = params["intersects"]
    if params.get("datetime"):
        body["datetime"] = datetime_interval(params["datetime"])
    if params.get("filter") is not None:
        body["filter"], body["filter-lang"] = cql2_json(
            params["filter"], params.get("filter-lang") or params.get("filter_lang")
        )
    if stac.sortby:
        body["sortby"] = [{"field": s.field, "direction": s.direction.value} for s in stac.sortby]
    if params.get("query"):
        try:
            body = _with_filter(body, query_filter(params["query"]))
        except ValueError as exc:
            raise BadSearch(str(exc)) from None
    return body


def _with_filter(body: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    current = body.get("filter")
    return {**body, "filter": {"op": "and", "args": [current, extra]} if current else extra, "filter-lang": "cql2-json"}


def _fields(params: dict[str, Any], stac: ExtendedSearch) -> tuple[set[str] | None, set[str]] | None:
    if stac.field is None:
        return None
    include = None if stac.field.includes is None else {item_path(f) for f in stac.field.includes}
    return include, {item_path(f) for f in stac.field.excludes or set()} - (include or set())  # in both: included


def strings(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise BadSearch(f"expected a list of strings, got {value!r}")


def integer(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise BadSearch(f"{name} must be an integer") from exc


def bbox(value: Any) -> list[float]:
    try:
        box = [float(v) for v in (value.split(",") if isinstance(value, str) else value)]
    except (TypeError, ValueError) as exc:
        raise BadSearch("bbox must be 4 or 6 numbers") from exc
    if len(box) not in (4, 6):
        raise BadSearch("bbox must be 4 or 6 numbers")
    half = len(box) // 2
    west, south, east, north = box[0], box[1], box[half], box[half + 1]
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90 and -90 <= north <= 90):
        raise BadSearch("bbox out of range: longitudes within [-180, 180], latitudes within [-90, 90]")
    if south > north:
        raise BadSearch("bbox: the southern latitude is above the northern one")
    return box


def datetime_interval(value: Any) -> str:
    if not isinstance(value, str):
        raise BadSearch("datetime must be an RFC 3339 instant or interval")
    try:
        check_interval(value)
    except ValueError as exc:
        raise BadSearch(str(exc)) from None
    return value


def cql2_json(value: Any, lang: str | None) -> tuple[dict[str, Any], str]:
    """Parse the filter with cql2 (text or JSON) and forward it as CQL2 JSON; a syntax error is the client's."""
    if lang not in (None, "cql2-text", "cql2-json"):
        raise BadSearch(f"filter-lang must be cql2-text or cql2-json, not {lang!r}")
    if cql2 is None:  # no parser installed: forward as given; a provider's 400 becomes ours when all refuse
        return _unchecked_json(value, lang)
    try:
        if isinstance(value, dict) or lang == "cql2-json":
            expr = cql2.parse_json(value if isinstance(value, str) else json.dumps(value))
        else:
            expr = cql2.parse_text(str(value))
        parsed = expr.to_json()
    except Exception as exc:
        raise BadSearch(f"invalid CQL2 filter: {str(exc).strip()[:500]}") from exc
    problem = _schema_problem(json.dumps(parsed, sort_keys=True), expr)
    if problem:
        raise BadSearch(f"invalid CQL2 filter: {problem}")
    return parsed, "cql2-json"


_CHECKED: LRUCache[str, str] = LRUCache(maxsize=4096)


def _schema_problem(canonical: str, expr: Any) -> str:
    """What is wrong with a parsed filter against the CQL2 schema ('' when nothing), remembered per filter: cql2's
    `validate` compiles the schema on every call (tens of milliseconds holding the GIL), and a filter comes back
    with every page of its search and every user of the same form."""
    if canonical not in _CHECKED:
        try:
            expr.validate()
            _CHECKED[canonical] = ""
        except Exception as exc:
            _CHECKED[canonical] = str(exc).strip()[:500] or type(exc).__name__
    problem: str = _CHECKED[canonical]
    return problem


def _unchecked_json(value: Any, lang: str | None) -> tuple[dict[str, Any], str]:
    if isinstance(value, dict):
        return value, "cql2-json"
    if lang == "cql2-json":
        try:
            return json.loads(value), "cql2-json"
        except ValueError as exc:
            raise BadSearch("invalid CQL2 filter: not JSON") from exc
    raise BadSearch("cql2-text filters need the CQL2 parser, which this deployment lacks: send the filter as cql2-json")


def value_at(item: dict[str, Any], path: str) -> Any:
    top, _, sub = path.partition(".")
    value = item.get(top)
    return value.get(sub) if sub and isinstance(value, dict) else (None if sub else value)


def _compare(a: Any, b: Any) -> int:
    """Values of one sort field across providers: missing last, numbers before text, like with like."""
    rank_a, rank_b = _rank(a), _rank(b)
    if rank_a != rank_b:
        return -1 if rank_a < rank_b else 1
    if rank_a == 2 or a == b:
        return 0
    return -1 if a < b else 1


def _rank(value: Any) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 0
    return 1 if isinstance(value, str) else 2


def order_key(sortby: list[tuple[str, bool]]) -> Callable[[dict[str, Any]], Any]:
    """The merge order of a sorted search: the sortby fields in their directions, then collection and id (missing
    values last in either direction)."""

    def compare(a: dict[str, Any], b: dict[str, Any]) -> int:
        for path, descending in sortby:
            va, vb = value_at(a, path), value_at(b, path)
            result = _compare(va, vb)
            if result and descending and None not in (va, vb):
                result = -result
            if result:
                return result
        ta, tb = (a.get("collection") or "", a.get("id") or ""), (b.get("collection") or "", b.get("id") or "")
        return (ta > tb) - (ta < tb)

    return cmp_to_key(compare)
