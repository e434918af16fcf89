"""The tile service as it runs: a real process over a private PostgreSQL + pgstac with the demo COGs."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import psycopg
import pytest
from eolake_tiles.guard import AllowList, AssetNotAllowed
from rasterio.io import MemoryFile

from eolake.demo import generate_hydrology
from eolake.ingest import ingest
from eolake_kit.auth import create_api_key
from servers import private_cluster, service_process

PUBLIC = "https://eolake.example.org"
PROBLEM = "application/problem+json"
COLL = "garonne-wse"
ITEM = "garonne-wse-2023-01-01"
WSE = "assets=wse&rescale=125,150&colormap_name=viridis"
# z=12 tile over Toulouse (lon 1.40, lat 43.60)
Z, X, Y = 12, 2063, 1495


@pytest.fixture(scope="module")
def cluster():
    with private_cluster("eolake-test-tiles-pg-") as c:
        yield c


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    root = tmp_path_factory.mktemp("storage")
    demo = root / "demo" / "hydrology"
    paths = generate_hydrology(demo)
    # A VRT that reads /etc/passwd, once named .vrt and once disguised as a GeoTIFF.
    vrt = (
        '<VRTDataset rasterXSize="8" rasterYSize="8"><VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
        "<SourceFilename>/etc/passwd</SourceFilename></SimpleSource></VRTRasterBand></VRTDataset>"
    )
    (root / "evil.vrt").write_text(vrt)
    (root / "evil.tif").write_text(vrt)
    return root, paths


@pytest.fixture(scope="module")
def loaded(cluster, storage):
    root, paths = storage
    report = ingest(paths, cluster.dsn())
    assert not report.rejected, report.rejected
    bbox = [1.30, 43.50, 1.50, 43.70]
    geometry = {"type": "Polygon", "coordinates": [[[1.3, 43.5], [1.5, 43.5], [1.5, 43.7], [1.3, 43.7], [1.3, 43.5]]]}
    evil = {
        "passwd": "/etc/passwd",
        "metadata": "http://169.254.169.254/latest/meta-data/x.tif",
        "vrt": str(root / "evil.vrt"),
        "disguised": str(root / "evil.tif"),
        "traversal": str(root / "demo" / ".." / ".." / ".." / "etc" / "passwd"),
        "vsicurl": "/vsicurl/http://169.254.169.254/x.tif",
    }
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(
            "SELECT pgstac.upsert_collection(%s::jsonb)",
            (
                json.dumps(
                    {
                        "type": "Collection",
                        "stac_version": "1.0.0",
                        "id": "t-evil",
                        "description": "bad hrefs",
                        "license": "CC-BY-4.0",
                        "links": [],
                        "extent": {
                            "spatial": {"bbox": [bbox]},
                            "temporal": {"interval": [["2023-01-01T00:00:00Z", None]]},
                        },
                    }
                ),
            ),
        )
        for name, href in evil.items():
            conn.execute(
                "SELECT pgstac.upsert_item(%s::jsonb)",
                (
                    json.dumps(
                        {
                            "type": "Feature",
                            "stac_version": "1.0.0",
                            "id": f"evil-{name}",
                            "collection": "t-evil",
                            "bbox": bbox,
                            "geometry": geometry,
                            "links": [],
                            "properties": {"datetime": "2023-01-01T00:00:00Z"},
                            "assets": {"data": {"href": href, "type": "image/tiff; application=geotiff"}},
                        }
                    ),
                ),
            )
    return root


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("keys") / "api-keys.json"
    return {
        "file": str(path),
        "admin": create_api_key(path, "admin", "admin"),
        "user": create_api_key(path, "someone", "user"),
    }


@pytest.fixture(scope="module")
def tiles(cluster, loaded, keys, tmp_path_factory):
    env = {
        "EOLAKE_TILES_DATABASE_URL": cluster.app_dsn(),
        "EOLAKE_TILES_PUBLIC_URL": PUBLIC,
        "EOLAKE_TILES_AUTH__API_KEYS_FILE": keys["file"],
        "EOLAKE_TILES_STORAGE_PATH": str(loaded / "demo"),
        "EOLAKE_TILES_MOSAIC_TIME_LIMIT": "2",
        "EOLAKE_TILES_REQUEST_TIMEOUT": "15",
    }
    log = tmp_path_factory.mktemp("logs") / "tiles.log"
    with service_process("eolake_tiles", env, log) as url:
        yield url + "/tiles"


def decode(body: bytes) -> np.ndarray:
    with MemoryFile(body) as mem, mem.open() as src:
        return src.read()


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["detail"]
    return body


def test_item_tile_is_a_256_png_with_pixels_and_cache_headers(tiles):
    r = httpx.get(f"{tiles}/collections/{COLL}/items/{ITEM}/tiles/WebMercatorQuad/{Z}/{X}/{Y}.png?{WSE}", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"].startswith("public, max-age=")
    data = decode(r.content)
    assert data.shape == (4, 256, 256)  # RGB + alpha
    assert (data[3] > 0).sum() > 100 and data[:3].std() > 0
    again = httpx.get(r.request.url, headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.headers["etag"] == r.headers["etag"] and not again.content


@pytest.mark.parametrize(
    "fmt,media", [("webp", "image/webp"), ("jpeg", "image/jpeg"), ("tif", "image/tiff; application=geotiff")]
)
def test_other_formats(tiles, fmt, media):
    r = httpx.get(f"{tiles}/collections/{COLL}/items/{ITEM}/tiles/WebMercatorQuad/{Z}/{X}/{Y}.{fmt}?{WSE}", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == media, r.text[:300]


def test_collection_mosaic_tile_tilejson_wmts(tiles):
    r = httpx.get(f"{tiles}/collections/{COLL}/tiles/WebMercatorQuad/{Z}/{X}/{Y}.png?{WSE}", timeout=30)
    assert r.status_code == 200, r.text
    assert decode(r.content).shape == (4, 256, 256)
    tj = httpx.get(f"{tiles}/collections/{COLL}/WebMercatorQuad/tilejson.json?{WSE}").json()
    assert tj["bounds"] == pytest.approx([1.30, 43.50, 1.50, 43.70], abs=1e-6)
    assert tj["tiles"][0].startswith(PUBLIC + "/tiles/collections/garonne-wse/tiles/WebMercatorQuad/")
    item_tj = httpx.get(f"{tiles}/collections/{COLL}/items/{ITEM}/WebMercatorQuad/tilejson.json?{WSE}").json()
    assert item_tj["bounds"] == pytest.approx([1.30, 43.50, 1.50, 43.70], abs=1e-6)
    wmts = httpx.get(f"{tiles}/collections/{COLL}/items/{ITEM}/WMTSCapabilities.xml?{WSE}")
    assert wmts.status_code == 200 and b"<Capabilities" in wmts.content and PUBLIC.encode() in wmts.content


def test_registered_search_mosaic(tiles, keys):
    search_body = {"collections": [COLL], "datetime": "2023-03-01T00:00:00Z/.."}
    problem(httpx.post(f"{tiles}/searches/register", json=search_body), 401)  # a write: users only
    r = httpx.post(f"{tiles}/searches/register", json=search_body, headers={"X-API-Key": keys["user"]})
    assert r.status_code == 200, r.text
    search = r.json()["id"]
    tile = httpx.get(f"{tiles}/searches/{search}/tiles/WebMercatorQuad/{Z}/{X}/{Y}.png?{WSE}", timeout=30)
    assert tile.status_code == 200 and decode(tile.content).shape == (4, 256, 256)
    problem(httpx.get(f"{tiles}/searches/{'0' * 32}/tiles/WebMercatorQuad/{Z}/{X}/{Y}.png?{WSE}"), 404)


def test_only_admins_list_registered_searches(tiles, keys):
    for path in ("/searches/", "/searches/list"):
        problem(httpx.get(tiles + path), 401)
        problem(httpx.get(tiles + path, headers={"X-API-Key": keys["user"]}), 403)
        listed = httpx.get(tiles + path, headers={"X-API-Key": keys["admin"]})
        assert listed.status_code == 200 and "searches" in listed.json()
    admin = {"X-API-Key": keys["admin"]}
    problem(httpx.get(f"{tiles}/searches/list?offset=9223372036854775808", headers=admin), 400)
    problem(httpx.get(f"{tiles}/searches/", params={"sortby": "a%b"}, headers=admin), 400)
    problem(httpx.get(f"{tiles}/searches/", params={"name": "50%"}, headers=admin), 400)
    assert httpx.get(f"{tiles}/searches/", params={"sortby": "-lastused"}, headers=admin).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"collections": [COLL], "datetime": "notadate"},
        {"collections": [COLL], "datetime": "2023-13-01T00:00:00Z"},
        {"collections": [COLL], "datetime": "../.."},
        {"collections": [COLL], "datetime": "a/b/c"},
        {"collections": [COLL], "filter": {"op": "and", "args": {"x": 1}}, "filter-lang": "cql2-json"},
        {"collections": [COLL], "bbox": [1, 2], "intersects": {"type": "Point", "coordinates": [1.4, 43.6]}},
    ],
)
def test_a_malformed_search_is_not_registered(tiles, keys, body):
    problem(httpx.post(f"{tiles}/searches/register", json=body, headers={"X-API-Key": keys["user"]}), 400)


NO_GEOMETRY = {"type": "Feature", "geometry": None, "properties": {}}


@pytest.mark.parametrize(
    "path, body",
    [
        ("statistics", NO_GEOMETRY),
        ("statistics", {"type": "FeatureCollection", "features": [NO_GEOMETRY]}),
        ("feature", NO_GEOMETRY),
        ("feature.png", NO_GEOMETRY),
        ("feature/64x64.png", NO_GEOMETRY),
        # empty geometries (found by schemathesis: a 500)
        ("statistics", {**NO_GEOMETRY, "geometry": {"type": "Polygon", "coordinates": []}}),
        ("feature", {**NO_GEOMETRY, "geometry": {"type": "MultiPoint", "coordinates": []}}),
        ("statistics", {**NO_GEOMETRY, "geometry": {"type": "Polygon", "coordinates": [[]]}}),
    ],
)
@pytest.mark.parametrize("owner", [f"collections/{COLL}", f"collections/{COLL}/items/{ITEM}"])
def test_features_without_geometry_are_a_400(tiles, path, body, owner):
    problem(httpx.post(f"{tiles}/{owner}/{path}?assets=wse", json=body, timeout=30), 400)


@pytest.mark.parametrize("query", ["f=png&width=-1", "f=npy&height=0", "f=png&width=100000"])
def test_colormap_images_are_bounded(tiles, query):
    problem(httpx.get(f"{tiles}/colorMaps/viridis?{query}"), 400)


def test_point_statistics_colormaps(tiles):
    point = httpx.get(f"{tiles}/collections/{COLL}/items/{ITEM}/point/1.44,43.60?assets=wse").json()
    assert point["coordinates"] == [1.44, 43.6] and len(point["values"]) == 1  # null: nodata there
    stats = httpx.get(f"{tiles}/collections/{COLL}/items/{ITEM}/statistics?assets=wse").json()
    band = stats["b1"]
    assert 120 < band["min"] <= band["max"] < 160
    assert "viridis" in [c["id"] for c in httpx.get(f"{tiles}/colorMaps").json()["colormaps"]]


def test_bad_requests_are_problems(tiles):
    base = f"{tiles}/collections/{COLL}/items/{ITEM}/tiles/WebMercatorQuad"
    problem(httpx.get(f"{base}/31/0/0.png?{WSE}"), 404)  # zoom beyond the served range
    problem(httpx.get(f"{base}/3/8/0.png?{WSE}"), 404)  # x outside the 8×8 matrix
    problem(httpx.get(f"{base}/3/-1/0.png?{WSE}"), 404)
    problem(httpx.get(f"{base}/3/0/0.png?{WSE}"), 404)  # a valid tile, but outside the item
    problem(httpx.get(f"{tiles}/collections/{COLL}/items/nope/tiles/WebMercatorQuad/{Z}/{X}/{Y}.png?{WSE}"), 404)
    problem(httpx.get(f"{base}/{Z}/{X}/{Y}.png?assets=wse&colormap_name=not-a-map"), 400)
    problem(httpx.get(f"{base}/{Z}/{X}/{Y}.png?assets=wse&colormap={{bad"), 400)
    problem(httpx.get(f"{base}/{Z}/{X}/{Y}.png?expression=" + "wse+" * 100 + "wse"), 400)
    problem(httpx.get(f"{base}/{Z}/{X}/{Y}.png?expression=__import__('os')"), 400)
    problem(httpx.get(f"{base}/{Z}/{X}/{Y}.png?{WSE}&tilesize=100000"), 400)
    problem(httpx.get(f"{tiles}/collections/{COLL}/items/{ITEM}/preview/100000x100000.png?assets=wse"), 400)
    problem(httpx.get(f"{base}/{Z}/{X}/{Y}.png?url=/etc/passwd"), 400)
    for params in ("null", "[1]", "{bad"):  # titiler spreads it as keyword arguments: null was a 500
        problem(httpx.get(f"{base}/{Z}/{X}/{Y}.png?{WSE}&algorithm=hillshade&algorithm_params={params}"), 400)


@pytest.mark.parametrize("name", ["passwd", "metadata", "vrt", "disguised", "traversal", "vsicurl"])
def test_assets_outside_allow_list_are_refused(tiles, name):
    url = f"{tiles}/collections/t-evil/items/evil-{name}"
    body = problem(httpx.get(f"{url}/tiles/WebMercatorQuad/{Z}/{X}/{Y}.png?assets=data", timeout=30), 403)
    assert "passwd" not in body["detail"] and "root:" not in json.dumps(body)
    problem(httpx.get(f"{url}/info?assets=data", timeout=30), 403)


def test_allow_list_never_opens(tmp_path):
    allow = AllowList(tmp_path, ["s3://bucket/"])
    (tmp_path / "a.tif").write_bytes(b"")
    assert allow.check(str(tmp_path / "a.tif")) == str((tmp_path / "a.tif").resolve())
    assert allow.check("s3://bucket/x/a.tif") == "s3://bucket/x/a.tif"
    for href in [
        "/etc/passwd",
        f"{tmp_path}/../x.tif",
        "s3://bucketx/a.tif",
        "s3://bucket/../other/a.tif",
        "http://169.254.169.254/a.tif",
        f"{tmp_path}/a.vrt",
        "vrt:///etc/passwd",
        "/vsicurl/http://x/a.tif",
        "https://user:pw@bucket/a.tif",
        "",
        "s3://bucket/a.tif?x=1",
        f"file://{tmp_path}/../../etc/passwd",
    ]:
        with pytest.raises(AssetNotAllowed):
            allow.check(href)


def test_zoom0_mosaic_is_bounded(tiles):
    started = time.monotonic()
    r = httpx.get(f"{tiles}/collections/{COLL}/tiles/WebMercatorQuad/0/0/0.png?{WSE}&items_limit=5", timeout=60)
    assert time.monotonic() - started < 40  # generous: it must not hang (request budget 15 s)
    assert r.status_code in (200, 204) or r.headers["content-type"].startswith(PROBLEM), r.status_code
    problem(httpx.get(f"{tiles}/collections/{COLL}/tiles/WebMercatorQuad/0/0/0.png?{WSE}&items_limit=100000"), 400)
    problem(httpx.get(f"{tiles}/collections/{COLL}/tiles/WebMercatorQuad/0/0/0.png?{WSE}&time_limit=3600"), 400)


def test_ready_and_landing(tiles):
    assert httpx.get(f"{tiles}/readyz").json()["status"] == "ready"
    links = httpx.get(f"{tiles}/", headers={"Host": "evil.example.com"}).json()["links"]
    assert all(link["href"].startswith(PUBLIC + "/tiles") for link in links)


def test_starts_and_reports_not_ready_without_postgres(tmp_path):
    env = {"EOLAKE_TILES_DATABASE_URL": "postgresql://eolake:x@127.0.0.1:9/eolake"}
    with service_process("eolake_tiles", env, tmp_path / "tiles.log") as url:
        body = problem(httpx.get(url + "/readyz", timeout=10), 503)
        assert body["checks"]["pgstac"]["status"] == "down"
        r = httpx.get(f"{url}/collections/{COLL}/items/{ITEM}/tiles/WebMercatorQuad/{Z}/{X}/{Y}.png?{WSE}", timeout=30)
        assert r.status_code == 503 and r.headers["content-type"].startswith(PROBLEM)


def test_expression_bombs_are_refused(tiles):
    base = f"{tiles}/collections/{COLL}/items/{ITEM}/tiles/WebMercatorQuad/{Z}/{X}/{Y}.png?expression="
    assert "nesting exceeds 8" in problem(httpx.get(base + "(" * 20 + "wse" + ")" * 20), 400)["detail"]
    assert "more than 8 bands" in problem(httpx.get(base + ";".join(["wse"] * 20)), 400)["detail"]
    assert "exceeds 64 terms" in problem(httpx.get(base + "*".join(["wse"] * 40)), 400)["detail"]


def test_feature_statistics_read_at_most_max_part_size(tiles):
    europe = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [[[-10, 36], [30, 36], [30, 60], [-10, 60], [-10, 36]]]},
    }
    started = time.monotonic()
    response = httpx.post(f"{tiles}/collections/{COLL}/items/{ITEM}/statistics?assets=wse", json=europe, timeout=60)
    assert response.status_code == 200, response.text
    stats = response.json()["properties"]["statistics"]
    band = next(iter(stats.values()))
    assert band["valid_pixels"] + band["masked_pixels"] <= 1024 * 1024  # the default max_part_size
    assert time.monotonic() - started < 15 + 5  # within the service's request budget (generous)
