"""Demo hydrology data: deterministic files, real COGs, valid STAC, hydroweb series that parse back."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import rowcol
from stac_pydantic import Collection, Item

from eolake.demo import garonne, generate_hydrology, parse_hydroweb
from eolake.demo import hydrology as hy


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(dest: Path) -> dict[str, Path]:
    return {str(p.relative_to(dest)): p for p in sorted(dest.rglob("*")) if p.is_file()}


def _ndjson(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, list[Path]]:
    dest = tmp_path_factory.mktemp("demo-a")
    return dest, generate_hydrology(dest)


@pytest.fixture(scope="module")
def wse_items(run) -> list[dict]:
    return _ndjson(run[0] / "items-garonne-wse.ndjson")


@pytest.fixture(scope="module")
def station_items(run) -> list[dict]:
    return _ndjson(run[0] / "items-garonne-virtual-stations.ndjson")


def test_returns_ndjson_files_collections_first(run):
    dest, paths = run
    assert paths == [
        dest / "collections.ndjson",
        dest / "items-garonne-wse.ndjson",
        dest / "items-garonne-virtual-stations.ndjson",
    ]
    files = _tree(dest)
    assert len([f for f in files if f.startswith("cog/")]) == 2 * len(hy.RASTER_DATES) == 48
    assert len([f for f in files if f.startswith("stations/")]) == len(garonne.STATIONS) == 6
    assert len(files) == 48 + 6 + 3, "no temporary files left behind"
    assert sum(p.stat().st_size for p in files.values()) < 5_000_000


def test_bytes_identical_across_directories_and_reruns(run, tmp_path):
    dest_a, _ = run
    generate_hydrology(tmp_path)
    a, b = _tree(dest_a), _tree(tmp_path)
    assert a.keys() == b.keys()
    for name in a:
        if name.endswith(".ndjson"):  # asset hrefs are absolute, so only the destination prefix may differ
            assert a[name].read_text().replace(str(dest_a), "<dest>") == b[name].read_text().replace(
                str(tmp_path), "<dest>"
            ), name
        else:
            assert _sha256(a[name]) == _sha256(b[name]), name

    before = {name: _sha256(p) for name, p in b.items()}
    generate_hydrology(tmp_path)
    assert {name: _sha256(p) for name, p in _tree(tmp_path).items()} == before


def test_stac_validates_and_links_up(run, wse_items, station_items):
    collections = _ndjson(run[0] / "collections.ndjson")
    for c in collections:
        Collection.model_validate(c)
        assert c["license"] == "CC-BY-4.0" and c["links"] == [] and c["keywords"] and c["providers"]
    assert [c["id"] for c in collections] == ["garonne-wse", "garonne-virtual-stations"]
    assert collections[0]["title"] == "Garonne water-surface elevation and water extent near Toulouse"

    for items, cid, count in ((wse_items, "garonne-wse", 24), (station_items, "garonne-virtual-stations", 6)):
        assert len(items) == count and len({i["id"] for i in items}) == count
        collection = next(c for c in collections if c["id"] == cid)
        ((west, south, east, north),) = collection["extent"]["spatial"]["bbox"]
        ((start, end),) = collection["extent"]["temporal"]["interval"]
        for item in items:
            Item.model_validate(item)
            assert item["collection"] == cid
            assert set(item["stac_extensions"]) <= set(collection["stac_extensions"])
            w, s, e, n = item["bbox"]
            assert west <= w <= e <= east and south <= s <= n <= north
            props = item["properties"]
            assert start <= (props["datetime"] or props["start_datetime"]) <= end
            for asset in item["assets"].values():
                assert asset["roles"] == ["data"] and Path(asset["href"]).is_absolute()


def test_asset_checksums_match_files(wse_items, station_items):
    for item in wse_items + station_items:
        for asset in item["assets"].values():
            data = Path(asset["href"]).read_bytes()
            assert asset["file:checksum"] == "1220" + hashlib.sha256(data).hexdigest()
            assert asset["file:size"] == len(data)


def test_cogs_are_tiled_with_overviews_and_match_metadata(wse_items):
    for item in wse_items:
        props = item["properties"]
        assert set(item["assets"]) == {"wse", "water_extent"}
        assert item["geometry"]["coordinates"][0][0] == item["bbox"][:2]
        arrays = {}
        for key, asset in item["assets"].items():
            assert asset["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
            (band,) = asset["raster:bands"]
            with rasterio.open(asset["href"]) as ds:
                assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
                assert ds.profile["tiled"] and ds.block_shapes == [(256, 256)]
                assert ds.compression is not None and ds.overviews(1) == [2]
                assert ds.crs.to_epsg() == props["proj:epsg"] == 4326
                assert [ds.height, ds.width] == props["proj:shape"]
                assert list(ds.transform)[:6] == pytest.approx(props["proj:transform"], abs=1e-12)
                assert list(ds.bounds) == pytest.approx(item["bbox"], abs=1e-9)
                assert ds.nodata == band["nodata"] and ds.dtypes[0] == band["data_type"]
                stamp = datetime.fromisoformat(props["datetime"]).strftime("%Y:%m:%d %H:%M:%S")
                assert ds.tags()["TIFFTAG_DATETIME"] == stamp
                arrays[key] = ds.read(1)
        wse, water = arrays["wse"], arrays["water_extent"]
        wet = wse != hy.WSE_NODATA
        assert set(np.unique(water)) == {0, 1}
        assert np.array_equal(wet, water == 1), "elevation exactly where there is water"
        assert 1000 < wet.sum() < 0.1 * wse.size
        assert 125.0 < wse[wet].min() and wse[wet].max() < 155.0
        stats = item["assets"]["wse"]["raster:bands"][0]["statistics"]
        assert stats["minimum"] == pytest.approx(float(wse[wet].min()), abs=1e-3)
        assert stats["maximum"] == pytest.approx(float(wse[wet].max()), abs=1e-3)


def test_seasonal_high_water_above_late_summer_low(wse_items):
    def read(item: dict) -> tuple[np.ndarray, np.ndarray]:
        with (
            rasterio.open(item["assets"]["wse"]["href"]) as w,
            rasterio.open(item["assets"]["water_extent"]["href"]) as m,
        ):
            return w.read(1), m.read(1)

    by_month = {int(i["properties"]["datetime"][5:7]): read(i) for i in wse_items}  # last item of each month
    always_wet = np.logical_and.reduce([m == 1 for _, m in by_month.values()])
    assert always_wet.sum() > 500
    level = {month: float(w[always_wet].mean()) for month, (w, _) in by_month.items()}
    extent = {month: int(m.sum()) for month, (_, m) in by_month.items()}
    assert min(level[m] for m in (1, 2, 3, 5)) > max(level[m] for m in (8, 9)) + 1.0
    assert min(extent[m] for m in (1, 2, 3, 5)) > 1.4 * max(extent[m] for m in (8, 9))


def test_hydroweb_series_parse_back_as_intended(station_items):
    for item, station in zip(station_items, garonne.STATIONS, strict=True):
        header, rows = parse_hydroweb(item["assets"]["series"]["href"])
        assert header["ID"] == item["id"] == item["properties"]["station_id"] == station.id
        assert header["BASIN"] == "GARONNE" and header["RIVER"] == item["properties"]["river"]
        assert header["UNIT"] == "m" and header["GEOID MODEL"] == "EGM2008"
        assert header["REFERENCE ELLIPSOID"] == "WGS84" and header["STATUS"] == "operational"
        assert header["COL 1"] == "date (yyyy-mm-dd)" and header["COL 3"].endswith("(m)")
        assert [float(header["LONGITUDE"]), float(header["LATITUDE"])] == item["geometry"]["coordinates"]

        intended = hy.station_series(station)
        assert int(header["NUMBER OF MEASUREMENTS IN DATASET"]) == len(rows) == len(intended)
        assert 25 <= len(rows) <= 40
        assert [r[0] for r in rows] == [r[0] for r in intended]
        assert all(a[0] < b[0] for a, b in zip(rows, rows[1:])), "strictly increasing dates"
        assert np.allclose([r[1:] for r in rows], [r[1:] for r in intended], atol=5e-4)
        assert all(0.0 < unc < 0.5 for _, _, unc in rows)
        assert rows[0][0].tzinfo is not None
        assert item["properties"]["start_datetime"] == rows[0][0].strftime("%Y-%m-%dT%H:%M:%SZ")
        assert item["properties"]["end_datetime"] == rows[-1][0].strftime("%Y-%m-%dT%H:%M:%SZ")

        lon, lat = item["geometry"]["coordinates"]
        distance, _ = garonne.distance_and_chainage(station.river, np.array(lon), np.array(lat))
        assert float(distance) < 5.0, "station sits on its river"


def test_station_levels_agree_with_rasters(station_items, wse_items):
    times, rasters = [], []
    for item in wse_items:
        times.append(datetime.fromisoformat(item["properties"]["datetime"]).timestamp())
        with rasterio.open(item["assets"]["wse"]["href"]) as ds:
            rasters.append((ds.transform, ds.read(1)))
    for item in station_items:
        _, rows = parse_hydroweb(item["assets"]["series"]["href"])
        lon, lat = item["geometry"]["coordinates"]
        series_t = [r[0].timestamp() for r in rows]
        diffs = []
        for t, (transform, wse) in zip(times, rasters):
            value = wse[rowcol(transform, lon, lat)]
            if value != hy.WSE_NODATA and series_t[0] <= t <= series_t[-1]:
                diffs.append(value - np.interp(t, series_t, [r[1] for r in rows]))
        assert len(diffs) >= 15, item["id"]
        assert abs(float(np.median(diffs))) < 0.15, item["id"]


@pytest.mark.parametrize(
    "bad",
    [
        "2023-01-05 10:21 abc 0.10",
        "2023-13-05 10:21 140.000 0.10",
        "2023-01-05 140.000 0.10",
        "2023-01-05 10:21 nan 0.10",
    ],
)
def test_malformed_hydroweb_line_names_file_and_line(tmp_path, bad):
    path = tmp_path / "bad.txt"
    path.write_text("#ID:: X\n#UNIT:: m\n#COL 1 : date (yyyy-mm-dd)\n2023-01-01 10:21 140.000 0.10\n\n" + bad + "\n")
    with pytest.raises(ValueError, match=r"bad\.txt:6: malformed"):
        parse_hydroweb(path)


def test_with_an_offline_tier_a_few_rasters_are_orderable_placeholders(run, tmp_path):
    from eolake.demo import OfflineDemo

    online, offline = tmp_path / "data" / "demo", tmp_path / "offline" / "demo"
    generate_hydrology(online, OfflineDemo(offline, "/downloads/retrievals"))
    items = {i["id"]: i for i in _ndjson(online / "items-garonne-wse.ndjson")}
    plain = {i["id"]: i for i in _ndjson(run[0] / "items-garonne-wse.ndjson")}
    placeholders = {f"garonne-wse-{day:%Y-%m-%d}" for day in hy.OFFLINE_DATES}
    assert len(items) == 24 and placeholders <= items.keys()
    for iid, item in items.items():
        Item.model_validate(item)
        props, hrefs = item["properties"], [Path(a["href"]) for a in item["assets"].values()]
        if iid not in placeholders:
            assert "storage:tier" not in props and all(h.is_relative_to(online) for h in hrefs)
            continue
        assert props["storage:tier"] == "offline" and props["order:status"] == "orderable"
        [link] = [x for x in item["links"] if x["rel"] == "retrieve"]
        assert link == {
            "rel": "retrieve",
            "href": "/downloads/retrievals",
            "method": "POST",
            "type": "application/json",
            "title": link["title"],
            "body": {"collection": "garonne-wse", "id": iid},
        }
        assert all(
            h.is_relative_to(offline) and h.exists() and not (online / h.relative_to(offline)).exists() for h in hrefs
        )
        # The same product as without a tier: only where it is kept differs.
        assert [a["file:checksum"] for a in item["assets"].values()] == [
            a["file:checksum"] for a in plain[iid]["assets"].values()
        ]
