"""OGC API conformance of the time-series service, requirement by requirement: OGC API Features Part 1 (core,
GeoJSON) and Part 3 (queryables, filter, CQL2 text and JSON), and OGC API EDR (core, collections, position, area,
locations, CoverageJSON). Expected answers are computed here from the generated demo items and series files, not
by the code under test. The service runs as a process (as in test_timeseries.py); the core is also tested alone."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from eolake_timeseries import deps
from eolake_timeseries.app import create_app
from eolake_timeseries.features import page
from eolake_timeseries.query import BadRequest, matches, parse_coords, parse_datetime, parse_filter
from eolake_timeseries.settings import TimeseriesSettings
from starlette.testclient import TestClient
from test_timeseries import COLL, PUBLIC, fake_catalog, peers, problem, written_rows

from eolake.demo import generate_hydrology
from eolake_spec import Limits
from servers import served, service_process

ROOT = Path(__file__).resolve().parents[1]
STATIONS = "/collections/stations"
LEVELS = "/collections/water-levels"
GEOJSON = "application/geo+json"
COVJSON = "application/prs.coverage+json"
CONF = {
    "features": "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf",
    "filter": "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf",
    "cql2": "http://www.opengis.net/spec/cql2/1.0/conf",
    "edr": "http://www.opengis.net/spec/ogcapi-edr-1/1.1/conf",
}
QUERYABLES = {"id", "name", "river", "basin", "start_time", "end_time", "measurements", "geometry"}


def get(url: str, path: str, **params) -> httpx.Response:
    return httpx.get(url + path, params=params, timeout=20)


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text[:300]
    return [f["id"] for f in response.json()["features"]]


def lonlat(item: dict) -> tuple[float, float]:
    return tuple(item["geometry"]["coordinates"][:2])


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def link(document: dict, rel: str, media: str | None = None) -> dict:
    return next(li for li in document["links"] if li["rel"] == rel and (media is None or li.get("type") == media))


def ours(url: str, href: str) -> str:
    """A link the service built: under its own (public) URL."""
    assert href.startswith(f"{url}/"), href
    return href


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("storage")
    paths = generate_hydrology(root / "demo" / "hydrology")
    return root, [json.loads(line) for line in next(p for p in paths if COLL in p.name).read_text().splitlines()]


@pytest.fixture(scope="module")
def service(demo, tmp_path_factory):
    root, items = demo
    with served(fake_catalog(items)) as catalog:
        env = {"EOLAKE_TIMESERIES_PEERS": peers(catalog), "EOLAKE_TIMESERIES_STORAGE_PATH": str(root)}
        with service_process(
            "eolake_timeseries", env, tmp_path_factory.mktemp("logs") / "ts.log", own_public_url=True
        ) as url:
            yield url + "/timeseries", items


# ------------------------------------------------------------------ the core alone


def test_datetime_parameter_instants_dates_and_intervals():
    assert parse_datetime(None) == (None, None)
    moment = parse_datetime("2023-03-01t10:00:00z")
    assert moment.start == moment.end == datetime(2023, 3, 1, 10, tzinfo=UTC)
    day = parse_datetime("2023-03-01")
    assert day.holds(datetime(2023, 3, 1, 23, 59, tzinfo=UTC)) and not day.holds(datetime(2023, 3, 2, tzinfo=UTC))
    assert parse_datetime("../2023-03-01").start is None and parse_datetime("2023-03-01/").end is None
    assert parse_datetime("2023-03-01T00:00:00+02:00/..").start == datetime(2023, 2, 28, 22, tzinfo=UTC)
    for bad in ("2023-13-45", "../..", "/", "2023-03-02/2023-03-01", "a/b/c", "yesterday"):
        with pytest.raises(BadRequest, match="datetime"):
            parse_datetime(bad)


def test_coords_are_bounded_wkt_of_the_expected_kind():
    limits = Limits(geometry_vertices=5)
    assert parse_coords("POINT(1.4 43.6)", ("Point",), limits).x == 1.4
    cases = {
        "POINT(1 2": "well-known text",
        "LINESTRING(0 0, 1 1)": "POINT",
        "POINT(200 0)": "longitudes",
        "POLYGON((0 0, 1 0, 1 1, 0.5 2, 0 1, 0 0))": "positions",
        "POINT EMPTY": "empty",
        "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))": "valid",
    }
    for text, reason in cases.items():
        kinds = ("Polygon",) if text.startswith("POLYGON") else ("Point",)
        with pytest.raises(BadRequest, match=reason):
            parse_coords(text, kinds, limits)


def test_filter_is_parsed_by_cql2_bounded_and_limited_to_queryables():
    limits = Limits(cql2_depth=3)
    feature = {
        "type": "Feature",
        "id": "S",
        "geometry": {"type": "Point", "coordinates": [1, 43]},
        "properties": {"river": "GARONNE", "basin": None, "measurements": 27},
    }
    text = parse_filter("river = 'GARONNE' AND measurements > 20", None, QUERYABLES, limits)
    as_json = parse_filter(json.dumps(text.expression.to_json()), "cql2-json", QUERYABLES, limits)
    assert matches(text, feature) and matches(as_json, feature)
    assert not matches(parse_filter("basin = 'GARONNE'", None, QUERYABLES, limits), feature)  # null: not true
    with pytest.raises(BadRequest, match="cannot be evaluated"):
        matches(parse_filter("river > 3", None, QUERYABLES, limits), feature)
    for value, lang, reason in [
        ("colour = 'red'", None, "not queryable"),
        ("river = = 1", None, "not valid"),
        ("((((river = 'A'))))", None, "nesting"),
        ("{", "cql2-json", "not valid JSON"),
        ("river = 'A'", "ecql", "filter-lang"),
    ]:
        with pytest.raises(BadRequest, match=reason):
            parse_filter(value, lang, QUERYABLES, limits)


def test_paging_offsets():
    rows = [{"id": str(i)} for i in range(5)]
    first, last = page(rows, 0, 2), page(rows, 4, 2)
    assert [r["id"] for r in first.features] == ["0", "1"] and first.next_offset == 2 and first.prev_offset is None
    assert [r["id"] for r in last.features] == ["4"] and last.next_offset is None and last.prev_offset == 2
    assert page(rows, 9, 2).features == [] and page(rows, 9, 2).matched == 5


def test_dependencies_can_be_swapped_and_queries_are_bounded(demo):
    """The station list is a dependency: overridden here (no catalog at all), and an EDR query selecting more
    stations than max_query_stations is refused before any series is read."""
    root, items = demo
    settings = TimeseriesSettings(
        public_url=PUBLIC,
        storage_path=str(root),
        max_query_stations=2,
        peers={"catalog": {"url": "http://127.0.0.1:9/stac"}},
    )
    app = create_app(settings)
    app.dependency_overrides[deps.station_items] = lambda: {item["id"]: item for item in items}
    with TestClient(app, base_url=f"{PUBLIC}") as client:
        assert len(client.get(f"/timeseries{STATIONS}/items").json()["features"]) == len(items)
        body = client.get(f"/timeseries{STATIONS}/area", params={"coords": "POLYGON((0 40,3 40,3 46,0 46,0 40))"})
        assert body.status_code == 400 and "more than 2" in body.json()["detail"]
        one = client.get(f"/timeseries{STATIONS}/position", params={"coords": "POINT({} {})".format(*lonlat(items[0]))})
        assert [c["id"] for c in one.json()["coverages"]] == [items[0]["id"]]
        levels = client.get(f"/timeseries{LEVELS}/items")
        assert levels.status_code == 400 and "more than 2" in levels.json()["detail"]
        one = client.get(f"/timeseries{LEVELS}/items", params={"station": items[0]["id"], "limit": 1000})
        assert one.json()["numberMatched"] == len(written_rows(items[0]["assets"]["series"]["href"]))


# ------------------------------------------------------------------ OGC API Features Part 1: core, GeoJSON


def test_req_core_root_success(service):
    url, _ = service
    landing = get(url, "/").json()
    for rel in ("self", "service-desc", "service-doc", "conformance", "data"):
        assert httpx.get(ours(url, link(landing, rel)["href"])).status_code == 200, rel


def test_req_core_conformance_success(service):
    url, _ = service
    conforms = set(get(url, "/conformance").json()["conformsTo"])
    assert {
        f"{CONF['features']}/core",
        f"{CONF['features']}/geojson",
        f"{CONF['filter']}/filter",
        f"{CONF['filter']}/features-filter",
        f"{CONF['filter']}/queryables",
        f"{CONF['cql2']}/cql2-text",
        f"{CONF['cql2']}/cql2-json",
        f"{CONF['cql2']}/basic-cql2",
        f"{CONF['edr']}/core",
        f"{CONF['edr']}/collections",
        f"{CONF['edr']}/covjson",
    } <= conforms


def test_req_core_api_definition_success(service):
    url, _ = service
    api = get(url, "/api").json()
    assert api["openapi"].startswith("3.")
    for path in (
        "/conformance",
        "/collections",
        "/collections/{collection_id}/items",
        "/collections/{collection_id}/items/{feature_id}",
        "/collections/{collection_id}/queryables",
        "/collections/{collection_id}/position",
        "/collections/{collection_id}/area",
        "/collections/{collection_id}/locations/{location_id}",
    ):
        assert path in api["paths"], path
    assert "502" in api["paths"]["/collections/{collection_id}/locations/{location_id}"]["get"]["responses"]


def test_req_core_fc_md_success_links_and_extent(service):
    url, items = service
    body = get(url, "/collections").json()
    assert [c["id"] for c in body["collections"]] == ["stations", "water-levels"]
    stations = body["collections"][0]
    assert httpx.get(ours(url, link(stations, "items", GEOJSON)["href"])).status_code == 200
    [box] = stations["extent"]["spatial"]["bbox"]
    lons, lats = zip(*(lonlat(i) for i in items))
    assert box[0] <= min(lons) and box[1] <= min(lats) and box[2] >= max(lons) and box[3] >= max(lats)
    [interval] = stations["extent"]["temporal"]["interval"]
    assert interval[0] <= min(i["properties"]["start_datetime"] for i in items)
    assert get(url, STATIONS).json()["id"] == "stations"


def test_req_core_sfc_md_op_unknown_collection_is_404(service):
    url, _ = service
    for path in ("/collections/nope", "/collections/nope/items", "/collections/nope/area"):
        problem(get(url, path), 404)


def test_req_core_fc_limit_definition_and_response(service):
    url, items = service
    assert len(ids(get(url, f"{STATIONS}/items", limit=2))) == 2
    assert len(ids(get(url, f"{STATIONS}/items"))) == min(10, len(items))  # the default
    assert len(ids(get(url, f"{STATIONS}/items", limit=10**6))) == len(items)  # capped, not refused
    for bad in ("0", "-1", "x"):
        problem(get(url, f"{STATIONS}/items", limit=bad), 400)


def test_req_core_fc_bbox_definition_and_response(service):
    url, items = service
    lon, lat = lonlat(items[2])
    box = f"{lon - 0.005},{lat - 0.005},{lon + 0.005},{lat + 0.005}"
    expected = sorted(i["id"] for i in items if abs(lonlat(i)[0] - lon) <= 0.005 and abs(lonlat(i)[1] - lat) <= 0.005)
    assert ids(get(url, f"{STATIONS}/items", bbox=box, limit=100)) == expected and items[2]["id"] in expected
    assert (
        ids(
            get(
                url,
                f"{STATIONS}/items",
                bbox=f"{box},0,0".replace(f",{lon + 0.005}", f",0,{lon + 0.005}", 1) if False else box,
            )
        )
        == expected
    )
    for bad in ("1,2,3", "a,b,c,d", "0,0,200,1", "0,50,1,40"):
        problem(get(url, f"{STATIONS}/items", bbox=bad), 400)


def test_req_core_fc_datetime_definition_and_response(service):
    url, items = service
    cut = "2023-01-05T00:00:00Z"
    started = sorted(i["id"] for i in items if when(i["properties"]["start_datetime"]) <= when(cut))
    assert 0 < len(started) < len(items)
    assert ids(get(url, f"{STATIONS}/items", datetime=f"../{cut}", limit=100)) == started
    assert ids(get(url, f"{STATIONS}/items", datetime="2030-01-01/..", limit=100)) == []
    problem(get(url, f"{STATIONS}/items", datetime="2023-02-30"), 400)


def test_req_core_fc_links_next_walks_every_station_once(service):
    url, items = service
    seen, href, pages = [], f"{url}{STATIONS}/items?limit=4&river=GARONNE", 0
    garonne = sorted(i["id"] for i in items if i["properties"]["river"] == "GARONNE")
    while href:
        body = httpx.get(href).json()
        assert link(body, "self")["type"] == GEOJSON
        seen += [f["id"] for f in body["features"]]
        nxt = [li for li in body["links"] if li["rel"] == "next"]
        href = ours(url, nxt[0]["href"]) if nxt else None
        pages += 1
        assert "river=GARONNE" in link(body, "self")["href"]  # the links keep the query
    assert seen == garonne and pages == -(-len(garonne) // 4)
    second = get(url, f"{STATIONS}/items", limit=1, offset=1).json()
    assert "offset=0" in link(second, "prev")["href"]


def test_req_core_fc_timestamp_numbermatched_numberreturned(service):
    url, items = service
    body = get(url, f"{STATIONS}/items", limit=2).json()
    assert body["numberMatched"] == len(items) and body["numberReturned"] == len(body["features"]) == 2
    assert abs((datetime.now(UTC) - when(body["timeStamp"])).total_seconds()) < 3600


def test_req_core_query_param_unknown_and_invalid(service):
    url, _ = service
    assert "unknown query parameter" in problem(get(url, f"{STATIONS}/items", colour="red"), 400)["detail"]
    problem(get(url, f"{STATIONS}/items", offset="-3"), 400)
    problem(get(url, f"{STATIONS}/locations/GARONNE_KM0328", colour="red"), 400)


def test_req_core_f_op_and_success(service):
    url, items = service
    sid = items[0]["id"]
    one = get(url, f"{STATIONS}/items/{sid}")
    assert one.headers["content-type"].startswith(GEOJSON) and one.json()["id"] == sid
    assert httpx.get(ours(url, link(one.json(), "self")["href"])).json() == one.json()
    problem(get(url, f"{STATIONS}/items/NO_SUCH_STATION"), 404)
    problem(get(url, f"{STATIONS}/items/{sid}", f="xml"), 400)


def test_req_geojson_definition_and_content(service):
    url, items = service
    response = get(url, f"{STATIONS}/items", limit=100)
    assert response.headers["content-type"].startswith(GEOJSON)
    body = response.json()
    assert body["type"] == "FeatureCollection"
    for feature in body["features"]:
        item = next(i for i in items if i["id"] == feature["id"])
        assert feature["type"] == "Feature" and feature["geometry"] == item["geometry"]
        assert feature["properties"]["name"] == item["properties"]["title"]


def test_stations_csv_has_the_columns_hydrology_users_ask_for(service):
    url, items = service
    for response in (
        get(url, f"{STATIONS}/items", f="csv", limit=100),
        httpx.get(f"{url}{STATIONS}/items?limit=100", headers={"Accept": "text/csv"}),
    ):
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["id"] for r in rows] == sorted(i["id"] for i in items)
        for row in rows:
            item = next(i for i in items if i["id"] == row["id"])
            assert (row["name"], row["start_time"], row["end_time"], int(row["measurements"])) == (
                item["properties"]["title"],
                item["properties"]["start_datetime"],
                item["properties"]["end_datetime"],
                item["properties"]["measurements"],
            )
            assert (float(row["longitude"]), float(row["latitude"])) == lonlat(item)


# ------------------------------------------------------------------ OGC API Features Part 3: queryables, filter


def test_req_queryables_get_queryables_response(service):
    url, _ = service
    response = get(url, f"{STATIONS}/queryables")
    assert response.headers["content-type"].startswith("application/schema+json")
    body = response.json()
    assert set(body["properties"]) == QUERYABLES and body["$schema"].startswith("https://json-schema.org/")


def test_req_queryables_query_parameters(service):
    url, items = service
    assert ids(get(url, f"{STATIONS}/items", river="TARN", limit=100)) == sorted(
        i["id"] for i in items if i["properties"]["river"] == "TARN"
    )
    assert ids(get(url, f"{STATIONS}/items", id=items[3]["id"])) == [items[3]["id"]]


def filtered(url: str, text: str, **more) -> list[str]:
    return ids(get(url, f"{STATIONS}/items", filter=text, limit=100, **more))


def test_req_filter_filter_param_and_filter_lang_param(service):
    url, items = service
    expected = sorted(i["id"] for i in items if i["properties"]["measurements"] > 28)
    assert 0 < len(expected) < len(items)
    assert filtered(url, "measurements > 28") == expected
    as_json = json.dumps({"op": ">", "args": [{"property": "measurements"}, 28]})
    assert filtered(url, as_json, **{"filter-lang": "cql2-json"}) == expected
    assert (
        filtered(url, "measurements > 28", **{"filter-crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}) == expected
    )
    problem(get(url, f"{STATIONS}/items", filter="measurements > 28", **{"filter-crs": "EPSG:3857"}), 400)
    problem(get(url, f"{STATIONS}/items", filter="measurements > 28", **{"filter-lang": "ecql"}), 400)


def test_req_filter_response_refuses_what_is_not_queryable_or_not_cql2(service):
    url, _ = service
    assert "not queryable" in problem(get(url, f"{STATIONS}/items", filter="colour = 'red'"), 400)["detail"]
    assert "not valid" in problem(get(url, f"{STATIONS}/items", filter="river = = 'A'"), 400)["detail"]
    deep = "(" * 40 + "river = 'A'" + ")" * 40
    assert "nesting" in problem(get(url, f"{STATIONS}/items", filter=deep), 400)["detail"]


def test_req_basic_cql2_and_advanced_comparisons(service):
    url, items = service
    props = {i["id"]: i["properties"] for i in items}
    everything = sorted(props)
    assert filtered(url, "river = 'GARONNE' AND NOT measurements < 30") == sorted(
        k for k, p in props.items() if p["river"] == "GARONNE" and p["measurements"] >= 30
    )
    assert filtered(url, "river <> 'GARONNE' OR measurements = 27") == sorted(
        k for k, p in props.items() if p["river"] != "GARONNE" or p["measurements"] == 27
    )
    assert filtered(url, "basin IS NULL") == [] and filtered(url, "basin IS NOT NULL") == everything
    assert filtered(url, "name LIKE '%KM03%'") == sorted(k for k, p in props.items() if "KM03" in p["title"])
    assert filtered(url, "measurements BETWEEN 27 AND 31") == sorted(
        k for k, p in props.items() if 27 <= p["measurements"] <= 31
    )
    assert filtered(url, "river IN ('TARN', 'ARIEGE')") == sorted(
        k for k, p in props.items() if p["river"] in ("TARN", "ARIEGE")
    )
    assert filtered(url, "CASEI(river) = casei('garonne')") == sorted(
        k for k, p in props.items() if p["river"] == "GARONNE"
    )


def test_req_spatial_temporal_and_property_property_functions(service):
    url, items = service
    lon, lat = lonlat(items[0])
    square = (
        f"POLYGON(({lon - 0.01} {lat - 0.01}, {lon + 0.01} {lat - 0.01}, {lon + 0.01} {lat + 0.01}, "
        f"{lon - 0.01} {lat + 0.01}, {lon - 0.01} {lat - 0.01}))"
    )
    near = sorted(i["id"] for i in items if abs(lonlat(i)[0] - lon) < 0.01 and abs(lonlat(i)[1] - lat) < 0.01)
    assert filtered(url, f"S_INTERSECTS(geometry, {square})") == near == filtered(url, f"S_WITHIN(geometry, {square})")
    assert filtered(url, f"S_INTERSECTS(geometry, BBOX({lon - 0.01},{lat - 0.01},{lon + 0.01},{lat + 0.01}))") == near
    assert items[0]["id"] in near and filtered(url, f"S_DISJOINT(geometry, {square})") == sorted(
        i["id"] for i in items if i["id"] not in near
    )
    cut = "2023-01-05T00:00:00Z"
    assert filtered(url, f"T_BEFORE(start_time, TIMESTAMP('{cut}'))") == sorted(
        i["id"] for i in items if when(i["properties"]["start_datetime"]) < when(cut)
    )
    assert filtered(url, "start_time < end_time") == sorted(i["id"] for i in items)


# ------------------------------------------------------------------ water-levels: one feature a measurement


def levels_csv(url: str, **params) -> list[dict]:
    response = get(url, f"{LEVELS}/items", f="csv", limit=1000, **params)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv"), response.text
    return list(csv.DictReader(io.StringIO(response.text)))


def test_water_levels_as_the_portal_users_query_them_cql2_to_csv(service):
    """What hydrology users asked of the portal's WFS: name, start_time, wse, wse_u as CSV, chosen with CQL2."""
    url, items = service
    station = items[1]
    name = station["properties"]["title"]
    text = f"name = '{name}' AND start_time >= TIMESTAMP('2023-04-01T00:00:00Z') AND wse_u < 0.15"
    rows = levels_csv(url, filter=text)
    written = written_rows(station["assets"]["series"]["href"])
    expected = [
        (t.strftime("%Y-%m-%dT%H:%M:%SZ"), h, u)
        for t, h, u in written
        if t >= datetime(2023, 4, 1, tzinfo=UTC) and u < 0.15
    ]
    assert rows and list(rows[0])[:4] == ["name", "start_time", "wse", "wse_u"]
    assert [(r["start_time"], float(r["wse"]), float(r["wse_u"])) for r in rows] == expected
    assert {r["name"] for r in rows} == {name} and {r["station"] for r in rows} == {station["id"]}


def test_water_levels_filters_paging_and_items(service):
    url, items = service
    everything = [(i["id"], *row) for i in items for row in written_rows(i["assets"]["series"]["href"])]
    high = levels_csv(url, filter="wse > 140")
    assert len(high) == sum(1 for _, _, h, _ in everything if h > 140) > 0
    window = get(url, f"{LEVELS}/items", datetime="2023-06-01/2023-06-30", limit=5).json()
    assert window["numberMatched"] == sum(1 for _, t, _, _ in everything if t.strftime("%Y-%m") == "2023-06")
    assert window["numberReturned"] == 5 and link(window, "next")
    first = window["features"][0]
    assert get(url, f"{LEVELS}/items/{first['id']}").json() == first
    table = get(url, f"{LEVELS}/items", datetime="2023-06-01/2023-06-30", limit=5, f="csv")
    following = httpx.get(table.links["next"]["url"])  # a table has no room for links: the Link header has them
    assert following.headers["content-type"].startswith("text/csv")
    second = httpx.get(ours(url, link(window, "next")["href"])).json()
    assert [r["id"] for r in csv.DictReader(io.StringIO(following.text))] == [f["id"] for f in second["features"]]
    problem(get(url, f"{LEVELS}/items/{items[0]['id']}_20990101T000000"), 404)
    problem(get(url, f"{LEVELS}/items/NOPE_20230101T000000"), 404)
    assert set(get(url, f"{LEVELS}/queryables").json()["properties"]) >= {"name", "start_time", "wse", "wse_u"}
    assert "not queryable" in problem(get(url, f"{LEVELS}/items", filter="measurements > 3"), 400)["detail"]
    problem(get(url, f"{LEVELS}/position", coords="POINT(1 43)"), 404)  # EDR queries are the stations'


# ------------------------------------------------------------------ OGC API EDR


def test_edr_req_collections_rc_md_success(service):
    url, _ = service
    stations = get(url, STATIONS).json()
    assert set(stations["data_queries"]) == {"position", "area", "locations", "items"}
    for name, query in stations["data_queries"].items():
        assert query["link"]["href"] == f"{url}{STATIONS}/{name}"
        assert query["link"]["variables"]["query_type"] == name
    assert set(stations["parameter_names"]) == {"wse", "wse_u"}
    for parameter in stations["parameter_names"].values():
        assert parameter["type"] == "Parameter" and parameter["unit"]["symbol"]["value"] == "m"
    assert {"CoverageJSON", "CSV"} <= set(stations["output_formats"])
    assert stations["crs"] == ["http://www.opengis.net/def/crs/OGC/1.3/CRS84"]


def series_of(item: dict) -> list[tuple[str, float, float]]:
    return [(t.strftime("%Y-%m-%dT%H:%M:%SZ"), h, u) for t, h, u in written_rows(item["assets"]["series"]["href"])]


def points(coverage: dict) -> list[tuple[str, float, float]]:
    axes, ranges = coverage["domain"]["axes"], coverage["ranges"]
    return list(zip(axes["t"]["values"], ranges["wse"]["values"], ranges["wse_u"]["values"], strict=True))


def test_edr_req_position_point_and_multipoint(service):
    url, items = service
    a, b = items[0], items[4]
    response = get(url, f"{STATIONS}/position", coords="POINT({} {})".format(*lonlat(a)))
    assert response.headers["content-type"].startswith(COVJSON)
    body = response.json()
    assert body["type"] == "CoverageCollection" and set(body["parameters"]) == {"wse", "wse_u"}
    [coverage] = body["coverages"]
    assert coverage["id"] == a["id"] and points(coverage) == series_of(a)
    assert (coverage["domain"]["axes"]["x"]["values"], coverage["domain"]["axes"]["y"]["values"]) == (
        [lonlat(a)[0]],
        [lonlat(a)[1]],
    )
    both = get(url, f"{STATIONS}/position", coords="MULTIPOINT(({} {}), ({} {}))".format(*lonlat(a), *lonlat(b)))
    assert sorted(c["id"] for c in both.json()["coverages"]) == sorted([a["id"], b["id"]])
    assert get(url, f"{STATIONS}/position", coords="POINT(10 10)").json()["coverages"] == []


def test_edr_req_coords_bad_wkt_is_a_400_problem(service):
    url, _ = service
    for query, coords in [
        ("position", "POINT(1 2"),
        ("position", "POLYGON((0 0,1 0,1 1,0 0))"),
        ("position", "POINT(1 95)"),
        ("area", "POINT(1 43)"),
        ("area", "nonsense"),
        ("area", "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"),
    ]:
        body = problem(get(url, f"{STATIONS}/{query}", coords=coords), 400)
        assert "coords" in body["detail"], (coords, body)
    problem(get(url, f"{STATIONS}/position"), 400)  # coords is required


def test_edr_req_area_datetime_and_csv(service):
    url, items = service
    lon, lat = lonlat(items[1])
    area = (
        f"POLYGON(({lon - 0.03} {lat - 0.03}, {lon + 0.03} {lat - 0.03}, {lon + 0.03} {lat + 0.03}, "
        f"{lon - 0.03} {lat + 0.03}, {lon - 0.03} {lat - 0.03}))"
    )
    inside = sorted(
        (i for i in items if abs(lonlat(i)[0] - lon) < 0.03 and abs(lonlat(i)[1] - lat) < 0.03), key=lambda i: i["id"]
    )
    assert len(inside) >= 1
    window = {"datetime": "2023-04-01T00:00:00Z/2023-05-31T23:59:59Z"}
    body = get(url, f"{STATIONS}/area", coords=area, **window).json()
    assert [c["id"] for c in body["coverages"]] == [i["id"] for i in inside]
    for coverage, item in zip(body["coverages"], inside, strict=True):
        assert points(coverage) == [p for p in series_of(item) if "2023-04-01" <= p[0][:10] <= "2023-05-31"]
    text = get(url, f"{STATIONS}/area", coords=area, f="csv", **window).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["id", "name", "longitude", "latitude", "start_time", "wse", "wse_u"]
    assert [(r["id"], r["start_time"], float(r["wse"]), float(r["wse_u"])) for r in rows] == [
        (c["id"], *p) for c in body["coverages"] for p in points(c)
    ]
    assert {r["name"] for r in rows} == {i["properties"]["title"] for i in inside}


def test_edr_req_parameter_name_crs_and_datetime_errors(service):
    url, items = service
    path = f"{STATIONS}/locations/{items[0]['id']}"
    only = get(url, path, **{"parameter-name": "wse"}).json()
    assert set(only["ranges"]) == set(only["parameters"]) == {"wse"}
    assert only["ranges"]["wse"]["values"] == [p[1] for p in series_of(items[0])]
    header = get(url, path, f="csv", **{"parameter-name": "wse_u"}).text.splitlines()[0]
    assert header == "id,name,longitude,latitude,start_time,wse_u"
    assert "parameter-name" in problem(get(url, path, **{"parameter-name": "temperature"}), 400)["detail"]
    problem(get(url, path, crs="EPSG:3857"), 400)
    assert get(url, path, crs="CRS84").status_code == 200
    for bad in ("2023-02-30", "2023-06-01/2023-05-01", "../.."):
        assert "datetime" in problem(get(url, path, datetime=bad), 400)["detail"]


def test_edr_req_locations(service):
    url, items = service
    listed = get(url, f"{STATIONS}/locations").json()
    assert sorted(f["id"] for f in listed["features"]) == sorted(i["id"] for i in items)
    first = listed["features"][0]
    data = httpx.get(ours(url, link(first, "data", COVJSON)["href"]))
    assert data.headers["content-type"].startswith(COVJSON) and data.json()["id"] == first["id"]
    problem(get(url, f"{STATIONS}/locations/NO_SUCH_STATION"), 404)
    assert Path(items[0]["assets"]["series"]["href"]).is_file()


def test_acceptance_suites_pass_against_the_service_alone(service, tmp_path):
    """The timeseries Robot Framework suites (run whole-platform by test_acceptance.py) against this service."""
    url, _ = service
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "acceptance" / "run.py"),
            "--base-url",
            url.removesuffix("/timeseries"),
            "--demo-data",
            "--outputdir",
            str(tmp_path),
            str(ROOT / "acceptance" / "timeseries"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    totals = re.findall(r"^(\d+) tests?, (\d+) passed, (\d+) failed", result.stdout, re.M)
    assert result.returncode == 0 and totals, result.stdout[-3000:] + result.stderr[-1000:]
    assert int(totals[-1][0]) >= 15 and totals[-1][0] == totals[-1][1], totals
