"""Third-party STAC clients against the session's embedded platform: stac-api-validator (offline, on the vendored
schemas) for every conformance class the catalog (/stac) and the federated search (/search) advertise, pystac-client's
matched(), and EODAG with its STAC provider pointed at /search."""

from __future__ import annotations

import httpx
import pytest
from stac_validator_offline import validate

from servers import RunningPlatform

COLLECTION = "garonne-wse"
STATIONS = "garonne-virtual-stations"  # the query checks: its items have a number and an array to compare
AREA = {"type": "Polygon", "coordinates": [[[1.3, 43.5], [1.5, 43.5], [1.5, 43.7], [1.3, 43.7], [1.3, 43.5]]]}
# The validator's class names, by the conformance URI suffix that advertises them.
CLASSES = {
    "/core": "core",
    "/item-search": "item-search",
    "/ogcapi-features": "features",
    "/collections": "collections",
    "#filter": "filter",
    "/item-search#sort": "item-search#sort",
    "/item-search#fields": "item-search#fields",
    "/item-search#query": "item-search#query",
    "/ogcapi-features#sort": "features#sort",
    "/ogcapi-features#fields": "features#fields",
    "/ogcapi-features#query": "features#query",
}
# What the query and fields checks compare, in the demo's virtual stations (the validator reads `in` as the overlap
# of an array property).
QUERY = {
    "fields_nested_property": "properties.title",
    "query_comparison_field": "measurements",
    "query_eq_value": "30",
    "query_neq_value": "-1",
    "query_lt_value": "100000",
    "query_lte_value": "100000",
    "query_gt_value": "-1",
    "query_gte_value": "0",
    "query_substring_field": "title",
    "query_starts_with_value": "Virtual station",
    "query_ends_with_value": "KM0004",
    "query_contains_value": "GARONNE",
    "query_in_field": "missions",
    "query_in_values": "SWOT,SENTINEL3A",
}


def advertised(root: str) -> list[str]:
    conforms = httpx.get(f"{root}/conformance", timeout=30).json()["conformsTo"]
    found = {
        name
        for suffix, name in CLASSES.items()
        for uri in conforms
        if uri.startswith("https://api.stacspec.org/") and uri.endswith(suffix)
    }
    return sorted(found)


@pytest.mark.parametrize("service", ["stac", "search"])
def test_stac_api_validator_finds_no_error_in_any_advertised_class(platform: RunningPlatform, service):
    # The root with its slash: the validator takes any URL ending in /search for an item search.
    root = f"{platform.base_url}/{service}/"
    classes = advertised(root.rstrip("/"))
    assert {"core", "item-search", "features", "collections"} <= set(classes), classes
    query_classes = [c for c in classes if c.endswith("#query")]
    _, errors = validate(root, [c for c in classes if c not in query_classes], COLLECTION, AREA, **QUERY)
    if query_classes:  # the sort checks need items with a datetime, the query checks these stations
        errors += validate(root, query_classes, STATIONS, AREA, **QUERY)[1]
    assert errors == [], "\n".join(errors)


def test_pystac_client_matched_is_right_or_absent(platform: RunningPlatform):
    from pystac_client import Client

    total = httpx.get(f"{platform.base_url}/stac/collections/{COLLECTION}/items", params={"limit": 1}).json()
    search = Client.open(f"{platform.base_url}/search/").search(collections=[COLLECTION], max_items=100)
    items = list(search.items())
    assert len(items) == total["numberMatched"] > 0
    assert search.matched() in (None, total["numberMatched"])


def test_eodag_pointed_at_the_federated_search_finds_a_collections_items(platform: RunningPlatform, tmp_path):
    from eolake_search.providers import offline_gateway

    dag = offline_gateway(tmp_path / "eodag", [], {"eolake": f"{platform.base_url}/search"})
    found = dag.search(provider="eolake", collection=COLLECTION, limit=5)
    assert len(found) == 5 and all(p.properties["id"].startswith(f"{COLLECTION}-") for p in found)


def test_dependent_queryables_narrow_to_the_items_with_the_chosen_values(platform: RunningPlatform):
    from eolake_client import Client

    items = httpx.post(
        f"{platform.base_url}/stac/search", json={"collections": [STATIONS], "limit": 100}, timeout=30
    ).json()["features"]
    rivers = sorted({i["properties"]["river"] for i in items})
    assert len(rivers) > 1
    with Client(platform.base_url) as client:
        for path in ("/stac", "/search"):
            every = client.queryables(STATIONS, path=path)["properties"]
            assert sorted(every["river"]["enum"]) == rivers
            for river in rivers:
                missions = {m for i in items if i["properties"]["river"] == river for m in i["properties"]["missions"]}
                narrowed = client.queryables(STATIONS, path=path, river=river)["properties"]
                assert set(narrowed["missions"]["enum"]) == missions and narrowed["river"]["enum"] == [river]
    for path in ("/stac", "/search"):
        refused = httpx.get(f"{platform.base_url}{path}/collections/{STATIONS}/queryables", params={"nope": "x"})
        assert refused.status_code == 400 and refused.headers["content-type"].startswith("application/problem+json")
