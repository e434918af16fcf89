"""The time-series service as it runs: a real process reading stations from a STAC API over HTTP and the demo
hydroweb files from storage, a local directory or an S3 bucket (moto's S3 server on loopback). The STAC API here is a
small stand-in serving the generated station items (paged); the whole-platform acceptance suite runs it against the
real catalog."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from pathlib import Path

import httpx
import pytest
from eolake_timeseries.hydroweb import parse_hydroweb, parse_hydroweb_bytes
from eolake_timeseries.settings import TimeseriesSettings
from eolake_timeseries.store import LocalSeries, S3Series, series_store
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eolake.demo import generate_hydrology
from eolake.demo.hydroweb import format_hydroweb
from servers import moto_server, served, service_process

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
            links.append(
                {
                    "rel": "next",
                    "href": f"{str(request.base_url).rstrip('/')}/stac/collections/{COLL}/items?offset={offset + page}",
                    "method": "GET",
                }
            )
        return JSONResponse({"type": "FeatureCollection", "features": items[offset : offset + page], "links": links})

    return Starlette(routes=[Route("/stac/", landing), Route("/stac/collections/{cid}/items", item_list)])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("storage")
    paths = generate_hydrology(root / "demo" / "hydrology")
    items = [json.loads(line) for line in next(p for p in paths if COLL in p.name).read_text().splitlines()]
    outside = tmp_path_factory.mktemp("outside") / "secret.txt"
    outside.write_text("2023-01-01 10:00 1.0 0.1\n")
    bad = dict(items[0], id="OUTSIDE_STATION", assets={"series": {"href": str(outside), "type": "text/plain"}})
    traversal = dict(
        items[0],
        id="TRAVERSAL_STATION",
        assets={
            "series": {
                "href": str(root / "demo" / ".." / ".." / outside.parent.name / "secret.txt"),
                "type": "text/plain",
            }
        },
    )
    return root, items, [bad, traversal]


@pytest.fixture(scope="module")
def service(demo, tmp_path_factory):
    root, items, bad = demo
    with served(fake_catalog(items + bad)) as catalog:
        env = {
            "EOLAKE_TIMESERIES_PUBLIC_URL": PUBLIC,
            "EOLAKE_TIMESERIES_PEERS": peers(catalog),
            "EOLAKE_TIMESERIES_STORAGE_PATH": str(root),
        }
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


STATIONS = "/collections/stations"


def series_url(url: str, sid: str) -> str:
    return f"{url}{STATIONS}/locations/{sid}"


def coverage_points(body: dict) -> list[tuple[str, float, float]]:
    """(time, wse, wse_u) of a CoverageJSON PointSeries coverage."""
    assert body["type"] == "Coverage" and body["domain"]["domainType"] == "PointSeries"
    return list(
        zip(
            body["domain"]["axes"]["t"]["values"],
            body["ranges"]["wse"]["values"],
            body["ranges"]["wse_u"]["values"],
            strict=True,
        )
    )


def csv_points(text: str) -> list[tuple[str, float, float]]:
    table = list(csv.DictReader(io.StringIO(text)))
    return [(row["start_time"], float(row["wse"]), float(row["wse_u"])) for row in table]


def test_stations_geojson_and_bbox(service):
    url, items = service
    response = httpx.get(url + f"{STATIONS}/items", params={"limit": 100})
    assert response.headers["content-type"].startswith("application/geo+json")
    fc = response.json()
    ids = {f["id"] for f in fc["features"]}
    assert {i["id"] for i in items} <= ids  # every page of the catalog
    feature = next(f for f in fc["features"] if f["id"] == items[0]["id"])
    assert feature["geometry"] == items[0]["geometry"]
    props = feature["properties"]
    assert props["unit"] == "m" and props["river"] == items[0]["properties"]["river"]
    assert props["measurements"] == items[0]["properties"]["measurements"]
    assert props["start_time"] == items[0]["properties"]["start_datetime"]
    data = next(link for link in feature["links"] if link["rel"] == "data")
    assert data["href"] == f"{PUBLIC}/timeseries{STATIONS}/locations/{items[0]['id']}"
    lon, lat = items[0]["geometry"]["coordinates"]
    boxed = httpx.get(
        url + f"{STATIONS}/items", params={"bbox": f"{lon - 1e-4},{lat - 1e-4},{lon + 1e-4},{lat + 1e-4}"}
    )
    assert items[0]["id"] in {f["id"] for f in boxed.json()["features"]}
    assert len(boxed.json()["features"]) < len(fc["features"])
    assert httpx.get(url + f"{STATIONS}/items", params={"bbox": "10,10,11,11"}).json()["features"] == []
    for bad in ["1,2,3", "a,b,c,d", "2,2,1,1", "0,0,200,1"]:
        problem(httpx.get(url + f"{STATIONS}/items", params={"bbox": bad}), 400)


def test_one_station_and_unknown(service):
    url, items = service
    sid = items[1]["id"]
    assert httpx.get(f"{url}{STATIONS}/items/{sid}").json()["id"] == sid
    problem(httpx.get(f"{url}{STATIONS}/items/NOPE"), 404)
    problem(httpx.get(series_url(url, "NOPE")), 404)


def written_rows(path: str) -> list[tuple[datetime, float, float]]:
    """The data lines of a demo file, read independently of the parser under test."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            day, hour, height, uncertainty = line.split()
            rows.append((datetime.fromisoformat(f"{day}T{hour}:00+00:00"), float(height), float(uncertainty)))
    return rows


def test_coverage_json_and_csv_agree_with_generated_files(service):
    url, items = service
    for item in items:
        rows = written_rows(item["assets"]["series"]["href"])
        response = httpx.get(series_url(url, item["id"]))
        assert response.headers["content-type"].startswith("application/prs.coverage+json")
        body = response.json()
        assert body["id"] == item["id"] and body["parameters"]["wse"]["unit"]["symbol"]["value"] == "m"
        assert body["eolake:station"]["reference"] == "EGM2008"
        assert coverage_points(body) == [(t.strftime("%Y-%m-%dT%H:%M:%SZ"), h, u) for t, h, u in rows]
        for response in (
            httpx.get(series_url(url, item["id"]), params={"f": "csv"}),
            httpx.get(series_url(url, item["id"]), headers={"Accept": "text/csv"}),
        ):
            assert response.headers["content-type"].startswith("text/csv")
            assert response.text.splitlines()[0] == "id,name,longitude,latitude,start_time,wse,wse_u"
            assert csv_points(response.text) == coverage_points(body)


def test_date_filters(service):
    url, items = service
    sid = items[0]["id"]
    rows = written_rows(items[0]["assets"]["series"]["href"])
    start, end = date(2023, 3, 1), date(2023, 6, 30)
    expected = [r for r in rows if start <= r[0].date() <= end]
    body = httpx.get(series_url(url, sid), params={"datetime": "2023-03-01/2023-06-30"}).json()
    assert len(coverage_points(body)) == len(expected) > 0
    assert all("2023-03-01" <= t[:10] <= "2023-06-30" for t, _, _ in coverage_points(body))
    text = httpx.get(series_url(url, sid), params={"datetime": "2023-03-01/2023-06-30", "f": "csv"}).text
    assert len(text.strip().splitlines()) == len(expected) + 1
    for bad in ({"datetime": "2023-07-01/2023-06-30"}, {"datetime": "2023-13-45"}, {"f": "xml"}):
        problem(httpx.get(series_url(url, sid), params=bad), 400)


def test_series_outside_storage_is_never_read(service):
    url, _ = service
    for sid in ("OUTSIDE_STATION", "TRAVERSAL_STATION"):
        body = problem(httpx.get(series_url(url, sid)), 404)
        assert "1.0" not in json.dumps(body)
    problem(httpx.get(series_url(url, "..%2F..%2Fetc%2Fpasswd")), 404)


def test_catalog_down_means_not_ready_and_503(demo, tmp_path):
    root, items, _ = demo
    catalog_server = served(fake_catalog(items))
    catalog = catalog_server.__enter__()
    try:
        env = {
            "EOLAKE_TIMESERIES_PUBLIC_URL": PUBLIC,
            "EOLAKE_TIMESERIES_PEERS": peers(catalog),
            "EOLAKE_TIMESERIES_STORAGE_PATH": str(root),
            "EOLAKE_TIMESERIES_CACHE_TTL": "0",
        }
        with service_process("eolake_timeseries", env, tmp_path / "ts.log") as url:
            assert httpx.get(url + "/readyz").json()["status"] == "ready"
            assert httpx.get(series_url(url, items[0]["id"])).status_code == 200
            catalog_server.__exit__(None, None, None)
            catalog_server = None
            body = problem(httpx.get(url + "/readyz", timeout=10), 503)
            assert body["checks"]["catalog"]["status"] == "down"
            assert "unavailable" in problem(httpx.get(series_url(url, items[0]["id"]), timeout=10), 503)["detail"]
            problem(httpx.get(f"{url}{STATIONS}/items", timeout=10), 503)
            assert httpx.get(url + "/healthz").status_code == 200
    finally:
        if catalog_server is not None:
            catalog_server.__exit__(None, None, None)


# ---------------------------------------------------------------- S3 storage (a real S3-compatible server on loopback)

BUCKET = "eolake-storage"
OTHER_BUCKET = "not-the-storage"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
MAX_BYTES = 4096  # the demo series are ~1.5 kB


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def station_at(item: dict, sid: str, href: str) -> dict:
    return dict(item, id=sid, assets={"series": {"href": href, "type": "text/plain"}})


def big_series(text: str) -> str:
    """A well-formed series larger than MAX_BYTES: the demo file with its data lines repeated."""
    data = [line for line in text.splitlines() if line and not line.startswith("#")]
    big = text + "\n".join(data * (MAX_BYTES // len("\n".join(data)) + 2)) + "\n"
    assert len(big.encode()) > MAX_BYTES and parse_hydroweb_bytes(big.encode(), "big")[1]
    return big


def s3_env(catalog: str, endpoint: str, root: Path) -> dict[str, str]:
    # storage_path is set too: a local href must be refused because storage is s3, not for want of a directory.
    return {
        **CREDS,
        "EOLAKE_TIMESERIES_PUBLIC_URL": PUBLIC,
        "EOLAKE_TIMESERIES_PEERS": peers(catalog),
        "EOLAKE_TIMESERIES_STORAGE_KIND": "s3",
        "EOLAKE_TIMESERIES_S3_BUCKET": BUCKET,
        "EOLAKE_TIMESERIES_S3_ENDPOINT": endpoint,
        "EOLAKE_TIMESERIES_S3_REGION": "us-east-1",
        "EOLAKE_TIMESERIES_STORAGE_PATH": str(root),
        "EOLAKE_TIMESERIES_MAX_SERIES_BYTES": str(MAX_BYTES),
    }


@pytest.fixture(scope="module")
def s3_world(demo, tmp_path_factory):
    """moto with the demo series uploaded to the storage bucket, a catalog whose stations point there (and a few
    elsewhere), and the service reading from S3."""
    root, items, _ = demo
    logs = tmp_path_factory.mktemp("s3logs")
    with moto_server(logs / "moto.log") as endpoint:
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket=OTHER_BUCKET)
        stations = []
        for item in items:
            key = f"series/{item['id']}.txt"
            s3.put_object(Bucket=BUCKET, Key=key, Body=Path(item["assets"]["series"]["href"]).read_bytes())
            stations.append(station_at(item, item["id"], f"s3://{BUCKET}/{key}"))
        text = Path(items[0]["assets"]["series"]["href"]).read_text()
        # Objects that would be served were the allow-list, the bound or the parser missing.
        s3.put_object(Bucket=OTHER_BUCKET, Key="series/x.txt", Body=text.encode())
        s3.put_object(Bucket=BUCKET, Key="series/../escaped.txt", Body=text.encode())
        s3.put_object(Bucket=BUCKET, Key="series/big.txt", Body=big_series(text).encode())
        s3.put_object(Bucket=BUCKET, Key="series/bad.txt", Body=b"2023-01-01 10:00 not-a-number 0.1\n")
        s3.put_object(Bucket=BUCKET, Key="series/changing.txt", Body=text.encode())
        extra = {
            "OTHER_BUCKET": f"s3://{OTHER_BUCKET}/series/x.txt",
            "DOTDOT": f"s3://{BUCKET}/series/../escaped.txt",
            "LOCAL_PATH": items[0]["assets"]["series"]["href"],
            "MISSING": f"s3://{BUCKET}/series/missing.txt",
            "BIG": f"s3://{BUCKET}/series/big.txt",
            "MALFORMED": f"s3://{BUCKET}/series/bad.txt",
            "CHANGING": f"s3://{BUCKET}/series/changing.txt",
        }
        stations += [station_at(items[0], sid, href) for sid, href in extra.items()]
        with (
            served(fake_catalog(stations)) as catalog,
            service_process("eolake_timeseries", s3_env(catalog, endpoint, root), logs / "ts.log") as url,
        ):
            yield {"url": url + "/timeseries", "items": items, "s3": s3, "endpoint": endpoint}


def expected_points(text: str) -> list[tuple[str, float, float]]:
    rows = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            day, hour, height, uncertainty = line.split()
            rows.append((f"{day}T{hour}:00Z", float(height), float(uncertainty)))
    return rows


def test_s3_series_json_and_csv(s3_world):
    url, items = s3_world["url"], s3_world["items"]
    ready = httpx.get(url + "/readyz").json()
    assert ready["status"] == "ready" and ready["checks"]["storage"]["status"] == "up"
    for item in items:
        text = s3_world["s3"].get_object(Bucket=BUCKET, Key=f"series/{item['id']}.txt")["Body"].read().decode()
        body = httpx.get(series_url(url, item["id"])).json()
        assert body["id"] == item["id"]
        assert coverage_points(body) == expected_points(text) != []
        response = httpx.get(series_url(url, item["id"]), params={"f": "csv"})
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert csv_points(response.text) == expected_points(text)


def test_s3_reads_only_the_storage_bucket(s3_world):
    url, s3 = s3_world["url"], s3_world["s3"]
    # The refused objects exist and are well-formed: only the allow-list keeps them out.
    assert s3.get_object(Bucket=OTHER_BUCKET, Key="series/x.txt")["ContentLength"] > 0
    assert s3.get_object(Bucket=BUCKET, Key="series/../escaped.txt")["ContentLength"] > 0
    assert Path(s3_world["items"][0]["assets"]["series"]["href"]).is_file()
    for sid in ("OTHER_BUCKET", "DOTDOT", "LOCAL_PATH"):
        body = problem(httpx.get(series_url(url, sid)), 404)
        assert "not in this platform's storage" in body["detail"], (sid, body)
    assert "missing" in problem(httpx.get(series_url(url, "MISSING")), 404)["detail"]


def test_s3_too_large_and_malformed_objects_are_502(s3_world):
    url = s3_world["url"]
    assert "too large" in problem(httpx.get(series_url(url, "BIG")), 502)["detail"]
    assert "malformed" in problem(httpx.get(series_url(url, "MALFORMED")), 502)["detail"]


def test_s3_replaced_object_is_served_anew(s3_world):
    url, s3, items = s3_world["url"], s3_world["s3"], s3_world["items"]
    before = s3.head_object(Bucket=BUCKET, Key="series/changing.txt")["ETag"]
    first = coverage_points(httpx.get(series_url(url, "CHANGING")).json())
    assert first == expected_points(Path(items[0]["assets"]["series"]["href"]).read_text())
    assert coverage_points(httpx.get(series_url(url, "CHANGING")).json()) == first  # served again (cached)
    replacement = Path(items[1]["assets"]["series"]["href"]).read_text()
    s3.put_object(Bucket=BUCKET, Key="series/changing.txt", Body=replacement.encode())
    assert s3.head_object(Bucket=BUCKET, Key="series/changing.txt")["ETag"] != before
    second = coverage_points(httpx.get(series_url(url, "CHANGING")).json())
    assert second == expected_points(replacement) and second != first


def test_s3_store_parses_an_unchanged_object_once(s3_world, monkeypatch):
    from eolake_timeseries import store as store_module

    for name, value in CREDS.items():
        monkeypatch.setenv(name, value)
    parsed = []

    def counting(data: bytes, source: str):
        parsed.append(source)
        return parse_hydroweb_bytes(data, source)

    monkeypatch.setattr(store_module, "parse_hydroweb_bytes", counting)
    s3 = s3_world["s3"]
    s3.put_object(
        Bucket=BUCKET, Key="unit/one.txt", Body=Path(s3_world["items"][2]["assets"]["series"]["href"]).read_bytes()
    )
    settings = TimeseriesSettings(storage_kind="s3", s3_bucket=BUCKET, s3_endpoint=s3_world["endpoint"])
    store = series_store(settings)
    assert isinstance(store, S3Series)
    href = f"s3://{BUCKET}/unit/one.txt"
    rows = store.read(href, "ONE")
    assert store.read(href, "ONE") is rows and len(parsed) == 1  # 304 Not Modified: the parsed series again
    s3.put_object(
        Bucket=BUCKET, Key="unit/one.txt", Body=Path(s3_world["items"][3]["assets"]["series"]["href"]).read_bytes()
    )
    assert store.read(href, "ONE") != rows and len(parsed) == 2


def test_s3_settings_are_validated():
    assert TimeseriesSettings(storage_kind="s3", s3_bucket=BUCKET).s3_bucket == BUCKET
    with pytest.raises(ValidationError, match="needs s3_bucket"):
        TimeseriesSettings(storage_kind="s3")
    with pytest.raises(ValidationError, match="storage_kind"):
        TimeseriesSettings(storage_kind="gcs")
    with pytest.raises(ValidationError, match="s3_endpoint"):
        TimeseriesSettings(storage_kind="s3", s3_bucket=BUCKET, s3_endpoint="minio:9000")
    assert isinstance(series_store(TimeseriesSettings()), LocalSeries)


def test_s3_down_means_not_ready_and_503(demo, tmp_path):
    root, items, _ = demo
    sid = items[0]["id"]
    moto = moto_server(tmp_path / "moto.log")
    endpoint = moto.__enter__()
    try:
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="s.txt", Body=Path(items[0]["assets"]["series"]["href"]).read_bytes())
        with (
            served(fake_catalog([station_at(items[0], sid, f"s3://{BUCKET}/s.txt")])) as catalog,
            service_process("eolake_timeseries", s3_env(catalog, endpoint, root), tmp_path / "ts.log") as url,
        ):
            url += "/timeseries"
            assert httpx.get(url + "/readyz").json()["status"] == "ready"
            assert httpx.get(series_url(url, sid)).status_code == 200
            moto.__exit__(None, None, None)
            moto = None
            body = problem(httpx.get(url + "/readyz", timeout=10), 503)
            assert body["checks"]["storage"]["status"] == "down" and body["checks"]["catalog"]["status"] == "up"
            response = httpx.get(series_url(url, sid), timeout=20)
            assert "storage" in problem(response, 503)["detail"] and response.headers["retry-after"] == "10"
            assert httpx.get(url + "/healthz").status_code == 200
    finally:
        if moto is not None:
            moto.__exit__(None, None, None)
