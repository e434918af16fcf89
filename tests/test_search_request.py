"""The federated search's request core (eolake_search.stac_request) without a server: GET and POST forms, the fields
selection, the query extension as CQL2, the sorted merge order."""

from __future__ import annotations

import pytest
from eolake_search.stac_request import BadSearch, from_query, order_key, parse

from eolake_kit.datetimes import check_interval
from eolake_kit.stac import query_filter, select_fields

ITEM = {
    "type": "Feature",
    "stac_version": "1.0.0",
    "id": "a",
    "collection": "c",
    "links": [],
    "assets": {"x": {}},
    "geometry": {"type": "Point", "coordinates": [0, 0]},
    "bbox": [0, 0, 0, 0],
    "properties": {"datetime": "2023-01-01T00:00:00Z", "title": "t", "gsd": 10},
}


def parsed(params: dict, **kwargs):
    return parse(params, 10, 100, 1, **kwargs)


def test_get_and_post_forms_give_the_same_provider_body():
    get = parsed(
        from_query(
            [
                ("collections", "a,b"),
                ("sortby", "-datetime,+id"),
                ("intersects", '{"type": "Point", "coordinates": [1, 2]}'),
                ("limit", "500"),
            ]
        )
    )
    assert get.limit == 100  # capped, not refused
    assert get.body["collections"] == ["a", "b"] and get.body["intersects"]["type"] == "Point"
    assert get.sortby == [("properties.datetime", True), ("id", False)]
    assert parsed(from_query([("bbox", "1,2,3,4")])).body["bbox"] == [1, 2, 3, 4]
    post = parsed({"collections": "a", "sortby": [{"field": "datetime", "direction": "desc"}]})
    assert post.body["collections"] == ["a"]


@pytest.mark.parametrize(
    "params",
    [
        {"bbox": "1,2,3,4"},  # a POST bbox is an array
        {"fields": None},
        {"intersects": {"type": "Nope"}},
        {"sortby": [{"field": "", "direction": "asc"}]},
        {"query": {"gsd": {"near": 3}}},
        {"datetime": "1937-01-01T12:00:27.87+0100"},
        {"limit": 0},
        {"whatever": 1},
    ],
)
def test_bad_requests_are_refused_with_a_reason(params):
    with pytest.raises(BadSearch):
        parsed(params)


def test_fields_selection_follows_the_extension():
    def keys(fields):
        request = parsed(from_query([("fields", fields)])) if isinstance(fields, str) else parsed({"fields": fields})
        out = select_fields(ITEM, request.fields)
        return set(out) | {f"properties.{k}" for k in out.get("properties", {})}

    assert keys("geometry") == {"type", "stac_version", "id", "links", "geometry"}
    assert "geometry" not in keys({"exclude": ["geometry"]}) and "properties.title" in keys({"exclude": ["geometry"]})
    assert "properties.title" not in keys({"include": [], "exclude": ["geometry"]})  # the default set less it
    assert keys({"include": ["properties.title"], "exclude": ["properties"]}) >= {"properties.title"}
    assert "geometry" in keys("+geometry,-geometry")  # in both: included


def test_query_becomes_cql2_with_numbers_compared_as_numbers():
    assert query_filter({"gsd": {"gte": "10"}}) == {"op": ">=", "args": [{"property": "gsd"}, 10]}
    starts = query_filter({"title": {"startsWith": "50%"}})
    assert starts == {"op": "like", "args": [{"property": "title"}, "50\\%%"]}
    both = parsed({"query": {"gsd": {"in": [10, 20]}}, "filter": "id = 'a'"}).body
    assert both["filter"]["op"] == "and" and both["filter-lang"] == "cql2-json"


def test_the_sorted_merge_order_puts_missing_values_last_both_ways():
    items = [{"id": i, "collection": "c", "properties": {"gsd": g}} for i, g in (("a", 10), ("b", None), ("c", 30))]
    assert [i["id"] for i in sorted(items, key=order_key([("properties.gsd", True)]))] == ["c", "a", "b"]
    assert [i["id"] for i in sorted(items, key=order_key([("properties.gsd", False)]))] == ["a", "c", "b"]


def test_rfc3339_accepts_lowercase_and_refuses_what_is_not_rfc3339():
    check_interval("2023-01-01t10:00:00z/..")
    check_interval("2023-01-01T10:00:00.123456789+01:00")
    for bad in ("2023-01-01", "2023-01-01T10:00:00+0100", "2023-02-30T00:00:00Z", "../.."):
        with pytest.raises(ValueError):
            check_interval(bad)


class ListProvider:
    """A provider answering from a list, sorted by gsd unless it cannot sort."""

    def __init__(self, name: str, gsds: list[int], sorts: bool):
        self.name, self.sorts, self.asked = name, sorts, []
        self.items = [
            {
                "type": "Feature",
                "id": f"{name}{g}",
                "collection": "c",
                "links": [],
                "properties": {"gsd": g, "datetime": "2023-01-01T00:00:00Z"},
            }
            for g in gsds
        ]

    async def search(self, body: dict, cursor, limit: int):
        from eolake_search.providers import Page

        self.asked.append(body)
        items = sorted(self.items, key=lambda i: i["properties"]["gsd"]) if "sortby" in body else list(self.items)
        return Page(items[:limit], None, len(items))


def test_a_provider_that_cannot_sort_is_sorted_per_page_and_says_so():
    import asyncio

    from eolake_search.item_search import FederatedItems, Page
    from eolake_search.settings import ProviderConfig, SearchSettings

    providers = {"a": ListProvider("a", [30, 10, 20], True), "b": ListProvider("b", [25, 5, 15], False)}
    configs = [ProviderConfig(name="a", url="http://a"), ProviderConfig(name="b", url="http://b", sortable=False)]
    core = FederatedItems(configs, lambda: providers, None, b"k" * 32, SearchSettings(peers={}))
    request = parsed({"sortby": [{"field": "gsd", "direction": "asc"}], "limit": 10})
    page = asyncio.run(core.search(request, Page("http://x", "/search", "POST", {})))
    assert [f["properties"]["gsd"] for f in page["features"]] == [5, 10, 15, 20, 25, 30]
    assert "sortby" in providers["a"].asked[0] and "sortby" not in providers["b"].asked[0]
    assert page["federation"]["b"]["sorted"] is False and "sorted" not in page["federation"]["a"]
    assert "numberMatched" not in page  # two providers: no total claimed


def test_a_filter_the_cql2_schema_refuses_is_refused_each_time_it_comes():
    """Parsed (the JSON is well formed) but not valid CQL2: `=` with one argument. The schema check's outcome is
    remembered per filter: the second time answers the same."""
    bad = {"filter": {"op": "=", "args": [{"property": "gsd"}]}}
    with pytest.raises(BadSearch, match="invalid CQL2 filter") as first:
        parsed(bad)
    with pytest.raises(BadSearch) as again:
        parsed(bad)
    assert str(again.value) == str(first.value)
    text, spelt_as_json = (
        parsed({"filter": "gsd = 10"}),
        parsed({"filter": {"op": "=", "args": [{"property": "gsd"}, 10]}}),
    )
    assert text.body["filter"] == spelt_as_json.body["filter"] and text.body["filter"]["op"] == "="
