"""The catalog service as it runs: a real process, a real private PostgreSQL + pgstac, real HTTP."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from eolake_kit.auth import create_api_key
from servers import private_cluster, service_process, wait_until

PUBLIC = "https://eolake.example.org"
PROBLEM = "application/problem+json"


def collection(cid: str) -> dict:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": cid,
        "description": f"test collection {cid}",
        "license": "CC-BY-4.0",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[1.0, 43.0, 2.0, 44.0]]},
            "temporal": {"interval": [["2023-01-01T00:00:00Z", "2023-12-31T23:59:59Z"]]},
        },
    }


def item(cid: str, iid: str, cloud: float, day: int) -> dict:
    x = 1.0 + day / 100
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
        "properties": {"datetime": f"2023-03-{day:02d}T10:00:00Z", "eo:cloud_cover": cloud, "platform": "demo"},
    }


@pytest.fixture(scope="module")
def cluster():
    # Its own cluster: a test stops and restarts it.
    with private_cluster("eolake-test-catalog-pg-") as c:
        yield c


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("keys") / "api-keys.json"
    return {
        "file": str(path),
        "admin": create_api_key(path, "admin", "admin"),
        "user": create_api_key(path, "someone", "user"),
    }


@pytest.fixture(scope="module")
def catalog(cluster, keys, tmp_path_factory) -> str:
    env = {
        "EOLAKE_CATALOG_DATABASE_URL": cluster.app_dsn(),
        "EOLAKE_CATALOG_PUBLIC_URL": PUBLIC,
        "EOLAKE_CATALOG_ROOT_PATH": "/stac",
        "EOLAKE_CATALOG_AUTH__API_KEYS_FILE": keys["file"],
    }
    log = tmp_path_factory.mktemp("logs") / "catalog.log"
    with service_process("eolake_catalog", env, log) as url:
        yield url


@pytest.fixture(scope="module")
def loaded(catalog, keys) -> str:
    admin = {"X-API-Key": keys["admin"]}
    with httpx.Client(base_url=catalog + "/stac", headers=admin) as client:
        assert client.post("/collections", json=collection("t-optical")).status_code == 201
        for day in range(1, 11):
            response = client.post("/collections/t-optical/items", json=item("t-optical", f"t-{day}", day * 10, day))
            assert response.status_code == 201, response.text
    return catalog


def test_landing_page_links_use_public_url_not_host_header(catalog):
    hostile = {
        "Host": "evil.example.com",
        "X-Forwarded-Host": "evil.example.com",
        "X-Forwarded-Proto": "http",
        "Forwarded": "host=evil.example.com;proto=http",
    }
    landing = httpx.get(catalog + "/stac/", headers=hostile).json()
    hrefs = [link["href"] for link in landing["links"]]
    assert landing["id"] == "eolake-catalog"
    assert hrefs and all(h.startswith(PUBLIC + "/stac") for h in hrefs), hrefs
    assert not any("evil" in h for h in hrefs)


def test_same_routes_with_or_without_prefix(loaded):
    direct = httpx.get(loaded + "/collections/t-optical").json()
    prefixed = httpx.get(loaded + "/stac/collections/t-optical").json()
    assert direct == prefixed
    assert {link["rel"]: link["href"] for link in direct["links"]}["self"] == f"{PUBLIC}/stac/collections/t-optical"


def test_conformance_lists_read_extensions(catalog):
    conforms = " ".join(httpx.get(catalog + "/stac/conformance").json()["conformsTo"])
    for part in (
        "item-search#filter",
        "item-search#sort",
        "item-search#fields",
        "item-search#query",
        "collection-search#free-text",
        "collection-search",
        "cql2-json",
    ):
        assert part in conforms, part


def test_cql2_filter_and_sort(loaded):
    body = {
        "collections": ["t-optical"],
        "filter-lang": "cql2-json",
        "filter": {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 30]},
        "sortby": [{"field": "properties.eo:cloud_cover", "direction": "desc"}],
    }
    features = httpx.post(loaded + "/stac/search", json=body).json()["features"]
    assert [f["properties"]["eo:cloud_cover"] for f in features] == [30, 20, 10]
    text = httpx.get(
        loaded + "/stac/search",
        params={"collections": "t-optical", "filter": "eo:cloud_cover > 80", "filter-lang": "cql2-text"},
    ).json()["features"]
    assert sorted(f["id"] for f in text) == ["t-10", "t-9"]


def test_pagination_and_fields(loaded):
    page = httpx.get(
        loaded + "/stac/search", params={"collections": "t-optical", "limit": 4, "fields": "-assets,-links"}
    ).json()
    assert len(page["features"]) == 4 and "assets" not in page["features"][0]
    nxt = next(link for link in page["links"] if link["rel"] == "next")
    assert nxt["href"].startswith(PUBLIC + "/stac/search")
    token = httpx.URL(nxt["href"]).params["token"]
    second = httpx.get(loaded + "/stac/search", params={"collections": "t-optical", "limit": 4, "token": token}).json()
    assert {f["id"] for f in second["features"]}.isdisjoint({f["id"] for f in page["features"]})


def test_free_text_collection_search(loaded):
    found = httpx.get(loaded + "/stac/collections", params={"q": "t-optical"}).json()["collections"]
    assert [c["id"] for c in found] == ["t-optical"]


@pytest.mark.parametrize(
    "q",
    [
        "(water",
        "'water",
        "x:y",
        "water!",
        "sea & sun",
        "garonne été",
        "rivière garonne, l'eau",
        '"t-optical',
        "a & b | !c <-> d",
        "back\\slash",
        "@QUOTE@1@QUOTE@",
    ],
)
@pytest.mark.parametrize("where", ["/stac/collections", "/stac/search", "/stac/collections/t-optical/items"])
def test_free_text_with_tsquery_syntax_is_searched_not_crashed(loaded, q, where):
    response = httpx.get(loaded + where, params={"q": q})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("q", ["(", "!&|", "AND", "  ,  "])
def test_free_text_without_a_word_is_a_400(loaded, q):
    response = httpx.get(loaded + "/stac/collections", params={"q": q})
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM
    assert "no word" in response.json()["detail"]


def test_free_text_alternatives_and_phrases_still_match(loaded):
    def ids(q: str) -> list[str]:
        return [c["id"] for c in httpx.get(loaded + "/stac/collections", params={"q": q}).json()["collections"]]

    assert ids("nothing-like-it, t-optical") == ["t-optical"]
    assert ids('"test collection" OR zzz') == ["t-optical"]
    assert ids("collection été") == []  # every word must appear
    posted = httpx.post(loaded + "/stac/search", json={"collections": ["t-optical"], "q": ["(", "x:y"]})
    assert posted.status_code == 200, posted.text


@pytest.mark.parametrize(
    "where, param",
    [
        ("/stac/search", "intersects=P"),
        ("/stac/search", "intersects=[1,2]"),
        *[
            (where, param)
            for where in ("/stac/search", "/stac/collections", "/stac/collections/t-optical/items")
            for param in ("query=x", "query=[1]", "query=%7B")
        ],
    ],
)
def test_json_query_parameters_that_are_not_objects_are_a_400(loaded, where, param):
    response = httpx.get(f"{loaded}{where}?{param}")
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert response.headers["content-type"] == PROBLEM and param.split("=")[0] in detail
    assert "must be a JSON object" in detail or "not valid JSON" in detail


@pytest.mark.parametrize("body", ["null", "[]", '"A"', "0"])
@pytest.mark.parametrize(
    "method, path", [("POST", "/stac/search"), ("POST", "/stac/collections"), ("PUT", "/stac/collections/t-optical")]
)
def test_json_bodies_that_are_not_objects_are_a_400(loaded, keys, body, method, path):
    response = httpx.request(
        method, loaded + path, content=body, headers={"Content-Type": "application/json", "X-API-Key": keys["admin"]}
    )
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    "method, path",
    [("PUT", "/stac/collections/t-optical"), ("PATCH", "/stac/collections/t-optical"), ("POST", "/stac/collections")]
    + [("POST", f"/stac/collections/{c}/items") for c in ("t-optical", "%C3%96")],  # found by schemathesis: 500s
)
def test_a_write_without_a_body_is_a_400(loaded, keys, method, path):
    response = httpx.request(method, loaded + path, headers={"X-API-Key": keys["admin"]})
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM, response.text


@pytest.mark.parametrize(
    "body, detail",
    [
        ({"query": {"x-schemathesis-additional": {}}, "filter-lang": "cql2-json"}, "query names no condition"),
        ({"query": {"id": "x"}}, "query must be an object of"),
        ({"query": {"id": {"eq": "x"}}, "filter": "id = ((", "filter-lang": "cql2-text"}, "Invalid filter"),
    ],
)
def test_a_search_query_that_cannot_be_a_filter_is_a_400(loaded, body, detail):
    """The query is turned into a CQL2 filter before routing (SearchBodyMiddleware): its refusal is a problem too."""
    response = httpx.post(loaded + "/stac/search", json=body)
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM, response.text
    assert detail in response.json()["detail"]


def test_a_json_patch_that_does_not_apply_is_a_400(loaded, keys):
    patch = [{"op": "replace", "path": "/properties/nothing/here", "value": 1}]
    response = httpx.patch(
        loaded + "/stac/collections/t-optical",
        json=patch,
        headers={"X-API-Key": keys["admin"], "Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    "path, patch, content_type",
    [
        ("/stac/collections/t-optical", {"links": {"not": "a list"}}, "application/merge-patch+json"),
        (
            "/stac/collections/t-optical",
            [{"op": "replace", "path": "/extent", "value": 7}],
            "application/json-patch+json",
        ),
        ("/stac/collections/t-optical/items/t-2", {"geometry": {"type": "Point"}}, "application/merge-patch+json"),
        (
            "/stac/collections/t-optical/items/t-2",
            [{"op": "remove", "path": "/properties/datetime"}],
            "application/json-patch+json",
        ),
    ],
)
def test_a_patch_that_leaves_an_invalid_document_writes_nothing(loaded, keys, path, patch, content_type):
    before = httpx.get(loaded + path).json()
    response = httpx.patch(
        loaded + path, json=patch, headers={"X-API-Key": keys["admin"], "Content-Type": content_type}
    )
    assert response.status_code == 400 and "invalid document" in response.json()["detail"], response.text
    assert httpx.get(loaded + path).json() == before


def test_a_valid_patch_is_applied(loaded, keys):
    response = httpx.patch(
        loaded + "/stac/collections/t-optical",
        json={"title": "Optical"},
        headers={"X-API-Key": keys["admin"], "Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200, response.text
    assert httpx.get(loaded + "/stac/collections/t-optical").json()["title"] == "Optical"


def test_field_selections_are_still_geojson(loaded):
    for response in (
        httpx.get(loaded + "/stac/search", params={"fields": "id", "collections": "t-optical"}),
        httpx.get(loaded + "/stac/collections/t-optical/items", params={"fields": "id"}),
        httpx.post(loaded + "/stac/search", json={"fields": {"include": ["id"]}}),
    ):
        assert response.status_code == 200 and response.headers["content-type"] == "application/geo+json"


def test_items_created_in_bulk_are_named_in_the_answer(loaded, keys):
    batch = {"type": "FeatureCollection", "features": [item("t-optical", f"t-bulk-{d}", 5, d) for d in (21, 22)]}
    url, admin = loaded + "/stac/collections/t-optical/items", {"X-API-Key": keys["admin"]}
    response = httpx.post(url, json=batch, headers=admin)
    assert response.status_code == 201 and response.json() == {"created": ["t-bulk-21", "t-bulk-22"]}
    again = httpx.post(url, json=batch, headers=admin)
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM


def test_items_with_a_geometry_postgis_cannot_write_back_are_refused(loaded, keys):
    nested = {
        **item("t-optical", "t-nested", 1, 1),
        "geometry": {
            "type": "GeometryCollection",
            "geometries": [
                {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [1.0, 43.0]}]}
            ],
        },
    }
    admin, url = {"X-API-Key": keys["admin"]}, loaded + "/stac/collections/t-optical"
    batch = {"type": "FeatureCollection", "features": [nested]}
    for response in (
        httpx.post(url + "/items", json=nested, headers=admin),
        httpx.post(url + "/items", json=batch, headers=admin),
        httpx.put(url + "/items/t-1", json={**nested, "id": "t-1"}, headers=admin),
    ):
        assert response.status_code == 400 and "GeometryCollection" in response.json()["detail"], response.text
    bulk = httpx.post(url + "/bulk_items", json={"items": {"t-nested": nested}}, headers=admin).json()
    assert bulk["success"] == 0 and "GeometryCollection" in bulk["errors"][0]["msg"]  # bulk: a report per item
    assert httpx.get(loaded + "/stac/search", params={"limit": 1000}).status_code == 200


def test_queryables(loaded):
    answer = httpx.get(loaded + "/stac/collections/t-optical/queryables")
    assert answer.status_code == 200 and "properties" in answer.json()


@pytest.mark.parametrize("who, status", [(None, 401), ("user", 403), ("admin", 201)])
def test_transactions_are_for_admins(catalog, keys, who, status):
    headers = {"X-API-Key": keys[who]} if who else {}
    response = httpx.post(catalog + "/stac/collections", json=collection(f"t-tx-{who}"), headers=headers)
    assert response.status_code == status, response.text
    if status != 201:
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == status
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_wrong_api_key_is_401(catalog):
    response = httpx.delete(catalog + "/stac/collections/t-optical", headers={"X-API-Key": "eol_not-a-key"})
    assert response.status_code == 401 and "invalid API key" in response.json()["detail"]


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("GET", "/stac/collections/missing", None, 404),
        ("GET", "/stac/collections/t-optical/items/missing", None, 404),
        ("GET", "/stac/search?limit=lots", None, 400),
        ("GET", "/stac/search?bbox=1,2,3", None, 400),
        ("POST", "/stac/search", {"filter": {"op": "nonsense", "args": []}, "filter-lang": "cql2-json"}, 400),
        ("GET", "/stac/no/such/route", None, 404),
    ],
)
def test_errors_are_problem_json(loaded, method, path, body, status):
    response = httpx.request(method, loaded + path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert problem["request_id"] == response.headers["x-request-id"]


def test_a_collection_without_a_bounding_box_is_refused_and_nothing_written(loaded, keys):
    """schemathesis stored one (`"bbox": []`): every collection mosaic of it was then a 500 in the tiles service."""
    admin = {"X-API-Key": keys["admin"]}
    empty = {**collection("t-nobox"), "extent": {**collection("t-nobox")["extent"], "spatial": {"bbox": []}}}
    created = httpx.post(loaded + "/stac/collections", json=empty, headers=admin)
    replaced = httpx.put(loaded + "/stac/collections/t-optical", json={**empty, "id": "t-optical"}, headers=admin)
    patched = httpx.patch(loaded + "/stac/collections/t-optical", json={"extent": empty["extent"]}, headers=admin)
    for answer in (created, replaced, patched):
        assert answer.status_code == 400 and answer.headers["content-type"] == PROBLEM, answer.text
        assert "extent.spatial.bbox needs at least one" in answer.json()["detail"]
    assert httpx.get(loaded + "/stac/collections/t-nobox").status_code == 404
    assert httpx.get(loaded + "/stac/collections/t-optical").json()["extent"]["spatial"]["bbox"]


def test_a_collection_chooses_its_time_partitions_and_an_unknown_choice_is_refused(loaded, keys, cluster):
    admin = {"X-API-Key": keys["admin"]}
    monthly = {**collection("t-monthly"), "eolake:partition": "month"}
    assert httpx.post(loaded + "/stac/collections", json=monthly, headers=admin).status_code == 201
    first = item("t-monthly", "m-1", 1, 4)
    answer = httpx.post(loaded + "/stac/collections/t-monthly/items", json=first, headers=admin)
    assert answer.status_code == 201, answer.text
    weekly = {**monthly, "eolake:partition": "week"}
    refused = httpx.put(loaded + "/stac/collections/t-monthly", json=weekly, headers=admin)
    assert refused.status_code == 400 and refused.headers["content-type"] == PROBLEM
    assert "eolake:partition must be one of none, year, month, not 'week'" in refused.json()["detail"]
    with psycopg.connect(cluster.dsn()) as conn:
        trunc = conn.execute("SELECT partition_trunc FROM pgstac.collections WHERE id = 't-monthly'").fetchone()
        partitions = conn.execute("SELECT partition FROM pgstac.partitions_view WHERE collection = 't-monthly'")
        assert trunc == ("month",) and [p for (p,) in partitions] == [partitions_name(conn, "t-monthly", "202303")]
    assert httpx.get(loaded + "/stac/collections/t-monthly/items/m-1").status_code == 200


def partitions_name(conn, collection_id: str, suffix: str) -> str:
    (key,) = conn.execute("SELECT key FROM pgstac.collections WHERE id = %s", (collection_id,)).fetchone()
    return f"_items_{key}_{suffix}"


def test_duplicate_collection_is_409(loaded, keys):
    response = httpx.post(
        loaded + "/stac/collections", json=collection("t-optical"), headers={"X-API-Key": keys["admin"]}
    )
    assert response.status_code == 409 and response.headers["content-type"] == PROBLEM


def test_metrics_use_route_templates(loaded):
    httpx.get(loaded + "/stac/collections/t-optical/items/t-1")
    httpx.get(loaded + "/stac/collections/t-optical/items/t-2")
    text = httpx.get(loaded + "/metrics").text
    assert (
        'eolake_http_requests_total{method="GET",route="/collections/{collection_id}/items/{item_id}",'
        'service="catalog",status_class="2xx"}'
    ) in text
    assert "t-optical" not in text and "t-1" not in text
    assert 'eolake_http_request_duration_seconds_bucket{le="0.25"' in text


def test_request_id_is_propagated(catalog):
    response = httpx.get(catalog + "/stac/", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    bad = httpx.get(catalog + "/stac/", headers={"X-Request-ID": "bad id\twith spaces"})
    assert bad.headers["x-request-id"] != "bad id\twith spaces" and len(bad.headers["x-request-id"]) == 32


def test_openapi_documents_operations_routes(catalog):
    paths = httpx.get(catalog + "/stac/api").json()["paths"]
    assert {"/healthz", "/readyz", "/metrics", "/search", "/collections"} <= set(paths)


def test_readiness_follows_postgres_without_restart(catalog, cluster):
    assert httpx.get(catalog + "/readyz").status_code == 200
    cluster.stop(mode="fast")
    try:
        down = wait_until(lambda: httpx.get(catalog + "/readyz").status_code == 503, timeout=20)
        assert down
        answer = httpx.get(catalog + "/readyz")
        assert answer.headers["content-type"] == PROBLEM
        assert answer.json()["checks"]["pgstac"]["status"] == "down"
        assert httpx.get(catalog + "/healthz").status_code == 200
        assert httpx.get(catalog + "/stac/collections").status_code >= 500
    finally:
        cluster.start(port=cluster.port)
    assert wait_until(lambda: httpx.get(catalog + "/readyz").status_code == 200, timeout=30)
    assert httpx.get(catalog + "/stac/collections").status_code == 200
