"""STAC API request pieces shared by the catalog and the federated search: the fields extension applied to an item,
the query extension as a CQL2 filter (pgstac's own query lacks startsWith, endsWith, contains and in)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# What a `fields` selection keeps besides its includes (id and links always, type and version so that the answer is
# still a STAC item; at most five members with one include, as clients expect), and the default set of an empty one.
ALWAYS = ("type", "stac_version", "id", "links")
DEFAULT_SET = (
    *ALWAYS,
    "collection",
    "geometry",
    "bbox",
    "assets",
    "stac_extensions",
    "properties.datetime",
    "properties.start_datetime",
    "properties.end_datetime",
)


def select_fields(item: dict[str, Any], fields: tuple[set[str] | None, set[str]]) -> dict[str, Any]:
    """The STAC fields extension on one item: the includes (with id, type, version and links); with only excludes,
    the whole item less them; with an empty or null include, the default set less the excludes. A field named in
    both is included."""
    include, exclude = fields
    if include is None and exclude:
        wanted = set(item) | {f"properties.{k}" for k in item.get("properties") or {}}
        wanted.discard("properties")
    else:
        wanted = set(ALWAYS) | include if include else set(DEFAULT_SET)
        include = include or set()
    out: dict[str, Any] = {}
    for path in sorted(wanted):
        top, _, sub = path.partition(".")
        if top not in item or path in exclude or top in exclude - (include or set()):
            continue
        if not sub:
            out[top] = item[top]
        elif isinstance(item[top], dict) and sub in item[top]:
            out.setdefault(top, {})[sub] = item[top][sub]
    return out


def extent_problem(collection: dict[str, Any]) -> str | None:
    """What is wrong with a collection's spatial extent, or None. STAC asks for at least one bounding box (the
    overall one); stac-pydantic accepts none, and the tiles service reads the first as a mosaic's bounds."""
    extent = collection.get("extent")
    spatial = extent.get("spatial") if isinstance(extent, dict) else None
    if not isinstance(spatial, dict) or not spatial.get("bbox"):
        return "extent.spatial.bbox needs at least one bounding box (the collection's overall one)"
    return None


PARTITION_FIELD = "eolake:partition"
PARTITIONS = ("none", "year", "month")


def partition_problem(collection: dict[str, Any]) -> str | None:
    """What is wrong with a collection's `eolake:partition` (how pgstac partitions its items in time: none, by year
    or by month, applied by eolake_catalog.schema), or None when it is right or absent."""
    if PARTITION_FIELD in collection and collection[PARTITION_FIELD] not in PARTITIONS:
        return f"{PARTITION_FIELD} must be one of {', '.join(PARTITIONS)}, not {collection[PARTITION_FIELD]!r}"
    return None


def collection_problem(collection: dict[str, Any]) -> str | None:
    """What makes a collection unfit to store beyond its schema (extent_problem, partition_problem), or None."""
    return extent_problem(collection) or partition_problem(collection)


def item_path(name: str) -> str:
    """A sortby or fields name as a path in the item: `datetime` is `properties.datetime`."""
    top = {"id", "collection", "geometry", "bbox", "type", "links", "assets", "stac_version", "stac_extensions"}
    return name if name.split(".", 1)[0] in top or name.startswith("properties.") else f"properties.{name}"


COMPARISONS = {
    "eq": "=",
    "neq": "<>",
    "ne": "<>",
    "lt": "<",
    "lte": "<=",
    "le": "<=",
    "gt": ">",
    "gte": ">=",
    "ge": ">=",
}
PATTERNS = {"startsWith": "{}%", "endsWith": "%{}", "contains": "%{}%"}


def query_filter(query: Any) -> dict[str, Any]:
    """The query extension as a CQL2 filter, which every provider with the filter extension runs (pgstac's own
    query lacks startsWith, endsWith, contains and in). Numbers written as strings compare as numbers."""
    if not isinstance(query, dict) or not all(isinstance(v, dict) for v in query.values()):
        raise ValueError("query must be an object of {property: {operator: value}}")
    clauses = [_clause(name, op, value) for name, ops in query.items() for op, value in ops.items()]
    if not clauses:
        raise ValueError("query names no condition")
    return clauses[0] if len(clauses) == 1 else {"op": "and", "args": clauses}


def _clause(name: str, op: str, value: Any) -> dict[str, Any]:
    prop = {"property": name}
    if op in COMPARISONS:
        return {"op": COMPARISONS[op], "args": [prop, _number(value)]}
    if op in PATTERNS and isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return {"op": "like", "args": [prop, PATTERNS[op].format(escaped)]}
    if op == "in" and isinstance(value, list):  # a value among these, or an array sharing one of them
        values = [_number(v) for v in value]
        return {
            "op": "or",
            "args": [{"op": "in", "args": [prop, values]}, {"op": "a_overlaps", "args": [prop, values]}],
        }
    raise ValueError(f"query: {op!r} with {value!r} is not a query operator and value")


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


@dataclass(frozen=True)
class NextLink:
    """Where the next page of a STAC answer is: a GET of `href`, or a POST of `body` (merged into the request's own
    body when `merge`), as the STAC API's paging links say."""

    href: str
    method: str
    body: dict[str, Any] | None
    merge: bool


def next_link(page: object) -> NextLink | None:
    """The `rel: next` link of a STAC page (item collection, search answer, any list with links), or None; the
    answer is read defensively (it comes from another server)."""
    links = page.get("links") if isinstance(page, dict) else None
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("rel") == "next" and isinstance(link.get("href"), str) and link["href"]:
            body = link.get("body")
            return NextLink(
                link["href"],
                str(link.get("method") or "GET").upper(),
                body if isinstance(body, dict) else None,
                bool(link.get("merge", False)),
            )
    return None
