"""The time-series service as it runs: a real process reading stations from a STAC API over HTTP and the demo
hydroweb files from storage. The STAC API here is a small stand-in serving the generated station items (paged);
the whole-platform acceptance suite runs it against the real catalog."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from pathlib import Path

import httpx
import pytest
from eolake_timeseries.hydroweb import parse_hydroweb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eolake.demo import generate_hydrology
from eolake.demo.hydroweb import format_hydroweb
from servers import served, service_process

PUBLIC = "https://eolake.example.org"
PROBLEM = "application/problem+json"
COLL = "garonne-virtual-stations"


def peers(catalog: str) -> str:
    return json.dumps({"catalog": {"url": catalog + "/stac"}})


def fake_catalog(items: list[dict], page: int = 3) -> Starlette:
    async def landing(request: Request):
        return JSONResponse({"type": "Catalog", "id": "fake", "links": []})

    async def item_list(request: Request):
        if request.path_params["cid"] != COLL:
            return JSONResponse({"code": "NotFoundError"}, status_code=404)
        offset = int(request.query_params.get("offset", 0))
        links = []
        if offset + page < len(items):
            links.append({"rel": "next", "href": f"{str(request.base_url).rstrip('/')}/stac/collections/{COLL}/"
                                                 f"items?offset={offset + page}", "method": "GET"})
        return JSONResponse({"type": "FeatureCollection", "features": items[offset:offset + page], "links": links})

    return Starlette(routes=[Route("/stac/", landing), Route("/stac/collections/{cid}/items", item_list)])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("storage")
    paths = generate_hydrology(root / "demo" / "hydrology")
    items = [json.loads(line) for line in next(p for p in paths if COLL in p.name).read_text().splitlines()]
    outside = tmp_path_factory.mktemp("outside") / "secret.txt"
    outside.write_text("2023-01-01 10:00 1.0 0.1\n")
    bad = dict(items[0], id="OUTSIDE_STATION",
               assets={"series": {"href": str(outside), "type": "text/plain"}})
    traversal = dict(items[0], id="TRAVERSAL_STATION",
                     assets={"series": {"href": str(root / "demo" / ".." / ".." / outside.parent.name / "secret.txt"),
                                        "type": "text/plain"}})
    return root, items, [bad, traversal]


@pytest.fixture(scope="module")
def service(demo, tmp_path_factory):
    root, items, bad = demo
    with served(fake_catalog(items + bad)) as catalog:
        env = {"EOLAKE_TIMESERIES_PUBLIC_URL": PUBLIC, "EOLAKE_TIMESERIES_PEERS": peers(catalog),
               "EOLAKE_TIMESERIES_STORAGE_PATH": str(root)}
        with service_process("eolake_timeseries", env, tmp_path_factory.mktemp("logs") / "ts.log") as url:
            yield url + "/timeseries", items


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith(PROBLEM)
    return response.json()


def test_parser_reads_back_exactly_what_the_demo_writer_wrote(demo):
    _, items, _ = demo
    for item in items:
        path = Path(item["assets"]["series"]["href"])
        header, rows = parse_hydroweb(path)
        fields = {key: value for key, value in header.items() if not key.startswith("COL ")}
        assert rows and format_hydroweb(fields, [tuple(m) for m in rows]) == path.read_text()


def test_stations_geojson_and_bbox(service):
    url, items = service
    fc = httpx.get(url + "/stations").json()
    ids = {f["id"] for f in fc["features"]}
    assert {i["id"] for i in items} <= ids  # every page of the catalog
    feature = next(f for f in fc["features"] if f["id"] == items[0]["id"])
    assert feature["geometry"] == items[0]["geometry"]
    props = feature["properties"]
    assert props["unit"] == "m" and props["river"] == items[0]["properties"]["river"]
    assert props["count"] == items[0]["properties"]["measurements"]
    assert props["series_url"] == f"{PUBLIC}/timeseries/stations/{items[0]['id']}/series"
    lon, lat = items[0]["geometry"]["coordinates"]
    boxed = httpx.get(url + "/stations", params={"bbox": f"{lon - 1e-4},{lat - 1e-4},{lon + 1e-4},{lat + 1e-4}"})
    assert items[0]["id"] in {f["id"] for f in boxed.json()["features"]}
    assert len(boxed.json()["features"]) < len(fc["features"])
    assert httpx.get(url + "/stations", params={"bbox": "10,10,11,11"}).json()["features"] == []
    for bad in ["1,2,3", "a,b,c,d", "2,0,1,1", "0,0,200,1"]:
        problem(httpx.get(url + "/stations", params={"bbox": bad}), 400)


def test_one_station_and_unknown(service):
    url, items = service
    sid = items[1]["id"]
    assert httpx.get(f"{url}/stations/{sid}").json()["id"] == sid
    problem(httpx.get(f"{url}/stations/NOPE"), 404)
    problem(httpx.get(f"{url}/stations/NOPE/series"), 404)


def written_rows(path: str) -> list[tuple[datetime, float, float]]:
    """The data lines of a demo file, read independently of the parser under test."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            day, hour, height, uncertainty = line.split()
            rows.append((datetime.fromisoformat(f"{day}T{hour}:00+00:00"), float(height), float(uncertainty)))
    return rows


def test_json_and_csv_agree_with_generated_files(service):
    url, items = service
    for item in items:
        rows = written_rows(item["assets"]["series"]["href"])
        body = httpx.get(f"{url}/stations/{item['id']}/series").json()
        assert body["station"] == item["id"] and body["unit"] == "m" and body["reference"] == "EGM2008"
        assert [(p["time"], p["height"], p["uncertainty"]) for p in body["points"]] == \
               [(t.strftime("%Y-%m-%dT%H:%M:%SZ"), h, u) for t, h, u in rows]
        for response in (httpx.get(f"{url}/stations/{item['id']}/series?format=csv"),
                         httpx.get(f"{url}/stations/{item['id']}/series", headers={"Accept": "text/csv"})):
            assert response.headers["content-type"].startswith("text/csv")
            table = list(csv.reader(io.StringIO(response.text)))
            assert table[0] == ["time", "height_m", "uncertainty_m"]
            assert [(t, float(h), float(u)) for t, h, u in table[1:]] == [(p["time"], p["height"], p["uncertainty"])
                                                                        for p in body["points"]]


def test_date_filters(service):
    url, items = service
    sid = items[0]["id"]
    rows = written_rows(items[0]["assets"]["series"]["href"])
    start, end = date(2023, 3, 1), date(2023, 6, 30)
    expected = [r for r in rows if start <= r[0].date() <= end]
    body = httpx.get(f"{url}/stations/{sid}/series", params={"start": "2023-03-01", "end": "2023-06-30"}).json()
    assert len(body["points"]) == len(expected) > 0
    assert all("2023-03-01" <= p["time"][:10] <= "2023-06-30" for p in body["points"])
    csv_rows = httpx.get(f"{url}/stations/{sid}/series?start=2023-03-01&end=2023-06-30&format=csv").text
    assert len(csv_rows.strip().splitlines()) == len(expected) + 1
    problem(httpx.get(f"{url}/stations/{sid}/series", params={"start": "2023-07-01", "end": "2023-06-30"}), 400)
    problem(httpx.get(f"{url}/stations/{sid}/series", params={"start": "2023-13-45"}), 400)
    problem(httpx.get(f"{url}/stations/{sid}/series", params={"format": "xml"}), 400)


def test_series_outside_storage_is_never_read(service):
    url, _ = service
    for sid in ("OUTSIDE_STATION", "TRAVERSAL_STATION"):
        body = problem(httpx.get(f"{url}/stations/{sid}/series"), 404)
        assert "1.0" not in json.dumps(body)
    problem(httpx.get(f"{url}/stations/..%2F..%2Fetc%2Fpasswd/series"), 404)


def test_catalog_down_means_not_ready_and_503(demo, tmp_path):
    root, items, _ = demo
    catalog_server = served(fake_catalog(items))
    catalog = catalog_server.__enter__()
    try:
        env = {"EOLAKE_TIMESERIES_PUBLIC_URL": PUBLIC, "EOLAKE_TIMESERIES_PEERS": peers(catalog),
               "EOLAKE_TIMESERIES_STORAGE_PATH": str(root), "EOLAKE_TIMESERIES_CACHE_TTL": "0"}
        with service_process("eolake_timeseries", env, tmp_path / "ts.log") as url:
            assert httpx.get(url + "/readyz").json()["status"] == "ready"
            assert httpx.get(f"{url}/stations/{items[0]['id']}/series").status_code == 200
            catalog_server.__exit__(None, None, None)
            catalog_server = None
            body = problem(httpx.get(url + "/readyz", timeout=10), 503)
            assert body["checks"]["catalog"]["status"] == "down"
            assert "unavailable" in problem(httpx.get(f"{url}/stations/{items[0]['id']}/series", timeout=10),
                                            503)["detail"]
            problem(httpx.get(f"{url}/stations", timeout=10), 503)
            assert httpx.get(url + "/healthz").status_code == 200
    finally:
        if catalog_server is not None:
            catalog_server.__exit__(None, None, None)
