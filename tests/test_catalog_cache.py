"""The catalog at scale, as behaviour: queryables indexed from summaries, estimated counts marked as such, the search
cache seeing every write at once (whoever writes), ETag and 304. Real PostgreSQL + pgstac, a real catalog process."""

from __future__ import annotations

import json

import httpx
import psycopg
import pytest

from eolake_catalog.cache import SearchCache
from eolake_catalog.schema import Queryable, index_collections, summary_queryable, wanted
from eolake_kit.auth import create_api_key
from servers import private_cluster, service_process

ESTIMATED = "eolake:numberMatchedEstimated"
ESTIMATE_ABOVE = 5  # matches: this catalog estimates beyond 5 (the spec's default is 10,000)


def collection(cid: str, summaries: dict | None = None) -> dict:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": cid,
        "description": f"test collection {cid}",
        "license": "CC-BY-4.0",
        "links": [],
        "summaries": summaries or {},
        "extent": {
            "spatial": {"bbox": [[1.0, 43.0, 2.0, 44.0]]},
            "temporal": {"interval": [["2023-01-01T00:00:00Z", "2023-12-31T23:59:59Z"]]},
        },
    }


def item(cid: str, iid: str, n: int) -> dict:
    x = 1.0 + n / 100
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": iid,
        "collection": cid,
        "links": [],
        "assets": {},
        "bbox": [x, 43.0, x + 0.1, 43.1],
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[x, 43.0], [x + 0.1, 43.0], [x + 0.1, 43.1], [x, 43.1], [x, 43.0]]],
        },
        "properties": {
            "datetime": f"2023-03-{n:02d}T10:00:00Z",
            "eo:cloud_cover": n * 5.0,
            "platform": "sat-a" if n % 2 else "sat-b",
            "gsd": 10,
        },
    }


SUMMARIES = {
    "platform": ["sat-a", "sat-b"],
    "eo:cloud_cover": {"minimum": 0, "maximum": 100},
    "gsd": [10],
    "instruments": ["msi", "oli"],
}


@pytest.fixture(scope="module")
def cluster():
    with private_cluster("eolake-test-catalog-cache-pg-") as c:
        yield c


@pytest.fixture(scope="module")
def admin(tmp_path_factory) -> tuple[str, dict]:
    path = tmp_path_factory.mktemp("keys") / "api-keys.json"
    return str(path), {"X-API-Key": create_api_key(path, "admin", "admin")}


@pytest.fixture(scope="module")
def catalog(cluster, admin, tmp_path_factory) -> httpx.Client:
    keys_file, headers = admin
    tuning = {"context": "auto", "context_estimated_count": ESTIMATE_ABOVE, "context_estimated_cost": 0}
    env = {
        "EOLAKE_CATALOG_DATABASE_URL": cluster.app_dsn(),
        "EOLAKE_CATALOG_PUBLIC_URL": "https://eolake.example.org",
        "EOLAKE_CATALOG_AUTH__API_KEYS_FILE": keys_file,
        "EOLAKE_CATALOG_PGSTAC": json.dumps(tuning),
    }
    with service_process("eolake_catalog", env, tmp_path_factory.mktemp("logs") / "catalog.log") as url:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            assert client.post("/collections", json=collection("t-cache", SUMMARIES)).status_code == 201
            response = client.post(
                "/collections/t-cache/items",
                json={"type": "FeatureCollection", "features": [item("t-cache", f"c-{n}", n) for n in range(1, 11)]},
            )
            assert response.status_code == 201, response.text
            yield client


def search(client: httpx.Client, **body) -> dict:
    response = client.post("/search", json={"collections": ["t-cache"], "limit": 20, **body})
    assert response.status_code == 200, response.text
    return response.json()


def ids(answer: dict) -> set[str]:
    return {feature["id"] for feature in answer["features"]}


# --------------------------------------------------------------------------------------------- queryables


def test_summaries_choose_the_indexed_queryables():
    assert summary_queryable("platform", ["a", "b"]) == Queryable("platform", "to_text")
    assert summary_queryable("eo:cloud_cover", {"minimum": 0, "maximum": 100}) == Queryable(
        "eo:cloud_cover", "to_float"
    )
    assert summary_queryable("gsd", [10]) is None  # one value: a filter on it keeps everything
    assert summary_queryable("instruments", ["msi", "oli"]) is None  # items hold arrays
    assert summary_queryable("eo:bands", [{"name": "B1"}, {"name": "B2"}]) is None
    assert summary_queryable("mixed", ["a", 1]) is None
    # One wrapper per name: a name numeric here and text there is not indexed at all.
    assert wanted([("a", {"x": [1, 2]}), ("b", {"x": ["p", "q"]}), ("c", {"y": [1, 2]}), ("d", {"y": [3, 4]})]) == {
        Queryable("y", "to_float"): ["c", "d"]
    }


def test_queryables_of_the_summaries_are_indexed_on_the_partitions(catalog, cluster):
    with psycopg.connect(cluster.app_dsn(), autocommit=True) as conn:
        rows = dict(
            conn.execute(
                "SELECT name, property_index_type FROM pgstac.queryables WHERE 't-cache' = ANY(collection_ids)"
            ).fetchall()
        )
        indexed = {
            field
            for (field,) in conn.execute(
                "SELECT field FROM pgstac.queryable_indexes() WHERE collection = 't-cache' AND indexname IS NOT NULL"
            )
        }
    assert rows == {"platform": "BTREE", "eo:cloud_cover": "BTREE"}
    assert {"platform", "eo:cloud_cover"} <= indexed
    answer = search(
        catalog,
        filter={
            "op": "and",
            "args": [
                {"op": "=", "args": [{"property": "platform"}, "sat-a"]},
                {"op": "<", "args": [{"property": "eo:cloud_cover"}, 20]},
            ],
        },
    )
    assert ids(answer) == {"c-1", "c-3"}


def test_indexing_again_changes_nothing(catalog, cluster):
    assert index_collections(cluster.app_dsn()) == []


def test_a_collection_updated_with_new_summaries_gets_their_indexes(catalog, cluster):
    updated = collection("t-cache", {**SUMMARIES, "view:off_nadir": {"minimum": 0, "maximum": 30}})
    assert catalog.put("/collections/t-cache", json=updated).status_code == 200
    with psycopg.connect(cluster.app_dsn(), autocommit=True) as conn:
        found = conn.execute("SELECT property_wrapper FROM pgstac.queryables WHERE name = 'view:off_nadir'").fetchone()
    assert found == ("to_float",)


# --------------------------------------------------------------------------------------------- counts


def test_a_large_count_is_an_estimate_and_says_so(catalog, cluster):
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("ANALYZE pgstac.items")  # the planner then expects every item of the collection
    answer = search(catalog, limit=3)
    assert answer["numberMatched"] >= ESTIMATE_ABOVE
    assert answer[ESTIMATED] is True


def test_a_small_count_is_exact(catalog):
    answer = search(catalog, filter={"op": "=", "args": [{"property": "id"}, "c-2"]})
    assert (answer["numberMatched"], answer[ESTIMATED]) == (1, False)


# --------------------------------------------------------------------------------------------- cache


def test_an_api_write_is_seen_by_the_next_search(catalog):
    before = search(catalog)
    assert "c-20" not in ids(before)
    assert catalog.post("/collections/t-cache/items", json=item("t-cache", "c-20", 20)).status_code == 201
    assert "c-20" in ids(search(catalog))
    assert catalog.delete("/collections/t-cache/items/c-20").status_code == 200
    assert "c-20" not in ids(search(catalog))
    assert catalog.get("/collections/t-cache/items/c-20").status_code == 404


def test_a_write_from_another_writer_is_seen_by_the_next_search(catalog, cluster):
    """pgstac written directly (an ingest, pypgstac, another replica): no message reaches this process."""
    search(catalog)
    assert catalog.get("/collections/t-cache/items/c-21").status_code == 404
    with psycopg.connect(cluster.app_dsn(), autocommit=True) as conn:
        conn.execute("SELECT pgstac.create_item(%s::jsonb)", (json.dumps(item("t-cache", "c-21", 21)),))
    assert "c-21" in ids(search(catalog))
    assert catalog.get("/collections/t-cache/items/c-21").status_code == 200
    with psycopg.connect(cluster.app_dsn(), autocommit=True) as conn:
        conn.execute(
            "SELECT pgstac.update_item(%s::jsonb)",
            (
                json.dumps(
                    {
                        **item("t-cache", "c-21", 21),
                        "properties": {**item("t-cache", "c-21", 21)["properties"], "platform": "sat-z"},
                    }
                ),
            ),
        )
    assert catalog.get("/collections/t-cache/items/c-21").json()["properties"]["platform"] == "sat-z"


def test_a_collection_deleted_and_created_again_is_seen_by_the_next_search(catalog):
    assert catalog.post("/collections", json=collection("t-gone")).status_code == 201
    assert catalog.post("/collections/t-gone/items", json=item("t-gone", "g-1", 1)).status_code == 201
    everywhere = {"limit": 100}
    assert "g-1" in ids(catalog.post("/search", json=everywhere).json())
    assert catalog.delete("/collections/t-gone").status_code == 200
    assert "g-1" not in ids(catalog.post("/search", json=everywhere).json())
    assert catalog.post("/collections", json=collection("t-gone")).status_code == 201
    assert catalog.post("/collections/t-gone/items", json=item("t-gone", "g-2", 2)).status_code == 201
    found = ids(catalog.post("/search", json={"collections": ["t-gone"]}).json())
    assert found == {"g-2"}


def test_same_search_with_keys_in_another_order_is_the_same_answer(catalog):
    body = {
        "collections": ["t-cache"],
        "limit": 3,
        "filter-lang": "cql2-json",
        "filter": {"op": "=", "args": [{"property": "platform"}, "sat-b"]},
    }
    first = catalog.post("/search", json=body)
    second = catalog.post(
        "/search", content=json.dumps(dict(reversed(list(body.items())))), headers={"content-type": "application/json"}
    )
    assert first.json() == second.json()


def test_answers_are_kept_from_the_second_asking_valid_for_their_stamp_only():
    cache = SearchCache(entries=2)
    assert not cache.asked_before(("q1",))
    assert cache.asked_before(("q1",))
    cache.put(("q1",), "stamp-1", {"features": [{"id": "a"}], "links": []})
    assert cache.get(("q1",), "stamp-1")["features"] == [{"id": "a"}]
    assert cache.get(("q1",), "stamp-2") is None  # a write moved the stamp
    kept = cache.get(("q1",), "stamp-1")
    kept["features"].append({"id": "changed by a caller"})
    assert cache.get(("q1",), "stamp-1")["features"] == [{"id": "a"}]
    for n in range(2, 5):
        cache.put((f"q{n}",), "s", {"features": [], "links": []})
    assert cache.get(("q1",), "stamp-1") is None  # the least recently used went first
    assert not SearchCache(entries=0).asked_before(("q",))


def test_the_cache_keeps_within_its_bytes():
    page = {"features": [{"id": str(n), "properties": {"text": "x" * 1000}} for n in range(10)], "links": []}
    cache = SearchCache(entries=100, max_bytes=100_000)  # room for nine such pages (10 kB each)
    for n in range(20):
        cache.put((n,), "s", page)
    assert cache.bytes <= 100_000
    assert cache.get((19,), "s") is not None and cache.get((0,), "s") is None
    cache.put(("huge",), "s", {**page, "features": page["features"] * 2})  # above an eighth of the budget
    assert cache.get(("huge",), "s") is None


# --------------------------------------------------------------------------------------------- ETag


def test_etag_then_304_until_the_answer_changes(catalog):
    path = "/search?collections=t-cache&limit=50"
    first = catalog.get(path)
    tag = first.headers["etag"]
    assert tag.startswith('W/"')
    again = catalog.get(path, headers={"If-None-Match": tag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", tag)
    assert catalog.get(path, headers={"If-None-Match": tag.removeprefix("W/")}).status_code == 304
    assert catalog.get(path, headers={"If-None-Match": '"other", ' + tag}).status_code == 304
    assert catalog.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    assert catalog.post("/collections/t-cache/items", json=item("t-cache", "c-22", 22)).status_code == 201
    changed = catalog.get(path, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert "c-22" in ids(changed.json())


def test_errors_and_writes_carry_no_etag(catalog):
    missing = catalog.get("/collections/t-cache/items/nope")
    assert missing.status_code == 404 and "etag" not in missing.headers
    assert "etag" not in catalog.post("/search", json={"collections": ["t-cache"]}).headers
