"""`eolake ingest` against the session's real pgstac database."""

from __future__ import annotations

import copy
import json
import os
import uuid
from pathlib import Path

import psycopg
import pytest

from eolake.ingest import API_RELS, IngestError, format_report, ingest


def query(pg, sql: str, *args):
    with psycopg.connect(pg.dsn()) as conn:
        return conn.execute(sql, args).fetchall()


def item_ids(pg, collection: str) -> set[str]:
    return {row[0] for row in query(pg, "SELECT id FROM pgstac.items WHERE collection = %s", collection)}


@pytest.fixture(scope="module")
def naip_item(shared_data) -> dict:
    with open(shared_data / "stac/naip/items.ndjson") as f:
        return json.loads(f.readline())


def make_collection(collection_id: str) -> dict:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": collection_id,
        "description": "ingest test",
        "license": "CC0-1.0",
        "links": [],
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]},
        },
    }


def make_item(template: dict, item_id: str, collection: str) -> dict:
    item = copy.deepcopy(template)
    item.update(id=item_id, collection=collection, links=[])
    return item


def write_ndjson(path: Path, lines: list) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_naip_load_and_rerun_is_an_upsert(pg, shared_data, naip_item, tmp_path):
    sources = [shared_data / "stac/pc-collections", shared_data / "stac/naip/items.ndjson"]
    report = ingest(sources, pg.dsn())
    print(f"\nNAIP: {report.items_loaded} items, {report.seconds:.2f} s, {report.items_per_second:.0f}/s")
    assert report.rejected == [] and not report.refused
    assert (report.collections_loaded, report.items_loaded) == (3, 1000)
    assert query(pg, "SELECT count(*) FROM pgstac.items WHERE collection = 'naip'") == [(1000,)]
    naip = query(pg, "SELECT content FROM pgstac.collections WHERE id = 'naip'")[0][0]
    assert not [link for link in naip["links"] if link["rel"] in API_RELS], "source API links must not be kept"
    assert any(link["rel"] == "license" for link in naip["links"])

    again = ingest(sources, pg.dsn())
    assert again.rejected == [] and again.items_loaded == 1000
    assert query(pg, "SELECT count(*) FROM pgstac.items WHERE collection = 'naip'") == [(1000,)]

    changed = copy.deepcopy(naip_item)
    changed["properties"]["eolake:note"] = "updated"
    report = ingest([write_ndjson(tmp_path / "changed.ndjson", [changed])], pg.dsn())
    assert report.items_loaded == 1 and report.rejected == []
    stored = query(pg, "SELECT pgstac.get_item(%s, 'naip')", changed["id"])[0][0]
    assert stored["properties"]["eolake:note"] == "updated"
    assert query(pg, "SELECT count(*) FROM pgstac.items WHERE collection = 'naip'") == [(1000,)]


def bad_file(tmp_path: Path, template: dict, collection: str) -> Path:
    no_geometry = make_item(template, "no-geometry", collection)
    del no_geometry["geometry"]
    bad_bbox = make_item(template, "bad-bbox", collection)
    bad_bbox["bbox"] = [1, 2, 3]
    no_datetime = make_item(template, "no-datetime", collection)
    del no_datetime["properties"]["datetime"]
    write_ndjson(tmp_path / "collection.ndjson", [make_collection(collection)])
    return write_ndjson(
        tmp_path / "items.ndjson",
        [
            make_item(template, "a", collection),  # 1
            '{"id": "broken", "type": ',  # 2
            no_geometry,  # 3
            bad_bbox,  # 4
            no_datetime,  # 5
            make_item(template, "orphan", unique("nowhere")),  # 6
            make_item(template, "a", collection),  # 7
            make_item(template, "b", collection),  # 8
            make_item(template, "a/b", collection),  # 9
            "",  # 10
            make_item(template, "c", collection),  # 11
        ],
    )


EXPECTED_REJECTIONS = {
    2: "invalid JSON",
    3: "geometry",
    4: "bbox",
    5: "datetime",
    6: "is not in the database",
    7: "duplicate item id 'a'",
    9: "not allowed in ids",
}


def test_bad_records_are_reported_and_valid_ones_loaded(pg, naip_item, tmp_path):
    collection = unique("ingest-bad")
    items_file = bad_file(tmp_path, naip_item, collection)
    report = ingest([tmp_path], pg.dsn())

    assert not report.refused
    assert (report.collections_loaded, report.items_loaded) == (1, 3)
    found = {r.line: r for r in report.rejected}
    assert set(found) == set(EXPECTED_REJECTIONS)
    for line, text in EXPECTED_REJECTIONS.items():
        assert text in found[line].reason, (line, found[line])
        assert found[line].file == str(items_file.resolve())
    assert found[7].id == "a" and "items.ndjson:1" in found[7].reason
    assert item_ids(pg, collection) == {"a", "b", "c"}
    assert "items.ndjson:3 [no-geometry]" in format_report(report)


def test_strict_mode_writes_nothing_when_anything_is_rejected(pg, naip_item, tmp_path):
    collection = unique("ingest-strict")
    bad_file(tmp_path, naip_item, collection)
    report = ingest([tmp_path], pg.dsn(), strict=True)

    assert report.refused and (report.collections_loaded, report.items_loaded) == (0, 0)
    assert {r.line for r in report.rejected} == set(EXPECTED_REJECTIONS)
    assert query(pg, "SELECT count(*) FROM pgstac.collections WHERE id = %s", collection) == [(0,)]
    assert item_ids(pg, collection) == set()
    assert format_report(report).startswith("REFUSED")


def test_a_failing_batch_leaves_nothing_of_itself(pg, naip_item, tmp_path):
    """PostgreSQL's jsonb refuses \\u0000, which only the database notices: batch 2 fails as a whole."""
    collection = unique("ingest-batch")
    poisoned = make_item(naip_item, "poisoned", collection)
    poisoned["properties"]["title"] = "nul\u0000byte"
    source = write_ndjson(
        tmp_path / "items.ndjson",
        [
            make_collection(collection),
            make_item(naip_item, "one", collection),
            make_item(naip_item, "two", collection),
            poisoned,
            make_item(naip_item, "four", collection),
        ],
    )

    report = ingest([source], pg.dsn(), batch_size=2)
    assert report.items_loaded == 2
    assert {r.id for r in report.rejected} == {"poisoned", "four"}
    assert all("batch 2" in r.reason for r in report.rejected)
    assert item_ids(pg, collection) == {"one", "two"}

    strict_collection = unique("ingest-batch-strict")
    source.write_text(source.read_text().replace(collection, strict_collection))
    report = ingest([source], pg.dsn(), batch_size=2, strict=True)
    assert report.refused
    assert item_ids(pg, strict_collection) == set()
    assert query(pg, "SELECT count(*) FROM pgstac.collections WHERE id = %s", strict_collection) == [(0,)]


def test_static_catalog_with_relative_links(pg, naip_item, tmp_path):
    collection = unique("ingest-static")
    (tmp_path / "coll" / "i1").mkdir(parents=True)
    (tmp_path / "coll" / "i2").mkdir()
    catalog = {
        "type": "Catalog",
        "stac_version": "1.0.0",
        "id": "root",
        "description": "static",
        "links": [{"rel": "root", "href": "./catalog.json"}, {"rel": "child", "href": "./coll/collection.json"}],
    }
    coll = make_collection(collection)
    coll["links"] = [
        {"rel": "root", "href": "../catalog.json"},
        {"rel": "parent", "href": "../catalog.json"},
        {"rel": "item", "href": "./i1/i1.json"},
        {"rel": "item", "href": "i2/i2.json"},
        {"rel": "license", "href": "https://example.com/licence"},
    ]
    dangling = [{"rel": "item", "href": "./gone/gone.json"}, {"rel": "child", "href": "https://example.com/c.json"}]
    for name in ("i1", "i2"):
        item = make_item(naip_item, name, collection)
        item["links"] = [{"rel": "collection", "href": "../collection.json"}, {"rel": "self", "href": f"./{name}.json"}]
        (tmp_path / "coll" / name / f"{name}.json").write_text(json.dumps(item))
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    (tmp_path / "coll" / "collection.json").write_text(json.dumps(coll))

    report = ingest([tmp_path / "catalog.json"], pg.dsn())
    assert report.rejected == [] and report.warnings == []
    assert (report.collections_loaded, report.items_loaded) == (1, 2)
    assert item_ids(pg, collection) == {"i1", "i2"}
    stored = query(pg, "SELECT content FROM pgstac.collections WHERE id = %s", collection)[0][0]
    assert [link["rel"] for link in stored["links"]] == ["license"]

    # The directory form finds catalog.json and reads every file once: no duplicates.
    assert ingest([tmp_path], pg.dsn()).rejected == []

    # A dangling local link is rejected naming the linking file; remote links are not fetched.
    catalog["links"] += dangling
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    report = ingest([tmp_path / "catalog.json"], pg.dsn())
    assert report.items_loaded == 2
    [rejection] = report.rejected
    assert rejection.file == str((tmp_path / "catalog.json").resolve()) and "gone.json" in rejection.reason
    assert len(report.warnings) == 1 and "https://example.com/c.json" in report.warnings[0]


def test_bad_ids_are_rejected(pg, naip_item, tmp_path):
    collection = unique("ingest-ids")
    write_ndjson(tmp_path / "a-collections.ndjson", [make_collection(collection), make_collection("bad:id")])
    ids = ("ok", "x?y", "x#y", "with space", "")
    features = [make_item(naip_item, item_id, collection) for item_id in ids]
    (tmp_path / "b-items.json").write_text(json.dumps({"type": "FeatureCollection", "features": features}))

    report = ingest([tmp_path], pg.dsn())
    assert report.items_loaded == 1 and report.collections_loaded == 1
    reasons = {(r.json_path or str(r.line)): r.reason for r in report.rejected}
    assert "not allowed in ids" in reasons["2"]
    for index in (1, 2, 3):
        assert "not allowed in ids" in reasons[f"features[{index}]"]
    assert "missing id" in reasons["features[4]"]
    assert item_ids(pg, collection) == {"ok"}


def test_missing_source_names_the_path(pg, tmp_path):
    missing = tmp_path / "nope.ndjson"
    with pytest.raises(IngestError, match="nope.ndjson"):
        ingest([missing], pg.dsn())


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_source_names_the_path(pg, tmp_path):
    locked = tmp_path / "locked.json"
    locked.write_text("{}")
    locked.chmod(0)
    with pytest.raises(IngestError, match="locked.json"):
        ingest([locked], pg.dsn())


def test_a_lock_held_elsewhere_stops_the_load_at_lock_timeout(pg, naip_item, tmp_path, capsys):
    from eolake.cli import main as cli

    collection = unique("ingest-locked")
    source = write_ndjson(
        tmp_path / "locked.ndjson", [make_collection(collection), make_item(naip_item, "x1", collection)]
    )
    with psycopg.connect(pg.dsn()) as holder:
        holder.execute("LOCK TABLE pgstac.collections IN ACCESS EXCLUSIVE MODE")  # held until the block ends
        with pytest.raises(psycopg.errors.LockNotAvailable):
            ingest([source], pg.dsn(), lock_seconds=0.5)
        code = cli(["ingest", str(source), "--dsn", pg.dsn(), "--lock-timeout", "0.5"])
        holder.rollback()
    assert code == 2
    message = capsys.readouterr().err
    assert "lock was not granted within 0.5 s" in message and "Traceback" not in message
    assert query(pg, "SELECT count(*) FROM pgstac.collections WHERE id = %s", collection) == [(0,)]


def test_a_collection_without_a_bounding_box_is_rejected_with_its_items(pg, naip_item, tmp_path):
    collection = make_collection(unique("ingest-nobox"))
    collection["extent"]["spatial"]["bbox"] = []
    source = write_ndjson(tmp_path / "nobox.ndjson", [collection, make_item(naip_item, "n1", collection["id"])])
    report = ingest([source], pg.dsn())
    assert report.collections_loaded == 0 and report.items_loaded == 0, report
    assert "extent.spatial.bbox needs at least one bounding box" in format_report(report)


def test_a_collection_asks_for_time_partitions_and_an_unknown_one_is_rejected(pg, naip_item, tmp_path):
    by_year, weekly = make_collection(unique("ingest-year")), make_collection(unique("ingest-weekly"))
    by_year["eolake:partition"], weekly["eolake:partition"] = "year", "week"
    records = [by_year, weekly, make_item(naip_item, "y1", by_year["id"]), make_item(naip_item, "w1", weekly["id"])]
    report = ingest([write_ndjson(tmp_path / "partitions.ndjson", records)], pg.dsn())
    assert report.collections_loaded == 1 and report.items_loaded == 1, report
    assert "eolake:partition must be one of none, year, month, not 'week'" in format_report(report)
    assert query(pg, "SELECT partition_trunc FROM pgstac.collections WHERE id = %s", by_year["id"]) == [("year",)]
    year = naip_item["properties"]["datetime"][:4]
    partitions = query(pg, "SELECT partition FROM pgstac.partitions_view WHERE collection = %s", by_year["id"])
    assert len(partitions) == 1 and partitions[0][0].endswith(f"_{year}"), partitions


def test_batch_size_zero_is_a_one_line_error(capsys):
    from eolake.cli import main as cli

    with pytest.raises(SystemExit) as exit_:
        cli(["ingest", "x.ndjson", "--batch-size", "0"])
    assert exit_.value.code == 2 and "--batch-size: must be at least 1, not 0" in capsys.readouterr().err


@pytest.mark.parametrize("value, message", [("inf", "at most 86400"), ("1e300", "at most 86400"), ("nan", "at least")])
def test_a_lock_timeout_postgresql_cannot_take_is_a_one_line_error(capsys, value, message):
    from eolake.cli import main as cli

    with pytest.raises(SystemExit) as exit_:
        cli(["ingest", "x.ndjson", "--lock-timeout", value])
    assert exit_.value.code == 2 and f"--lock-timeout: must be {message}" in capsys.readouterr().err


def _broken(item: dict, change) -> dict:
    copied = copy.deepcopy(item)
    change(copied)
    return copied


BROKEN_ITEMS = {
    "datetime not a date": lambda i: i["properties"].update(datetime="yesterday"),
    "no datetime nor range": lambda i: i["properties"].update(datetime=None),
    "start after end": lambda i: i["properties"].update(
        datetime=None, start_datetime="2021-02-01T00:00:00Z", end_datetime="2021-01-01T00:00:00Z"
    ),
    "bbox of three numbers": lambda i: i.update(bbox=[1, 2, 3]),
    "bbox upside down": lambda i: i.update(bbox=[-85.0, 31.0, -86.0, 30.0]),
    "geometry of an unknown type": lambda i: i.update(geometry={"type": "Blob", "coordinates": []}),
    "no properties": lambda i: i.pop("properties"),
    "assets not an object": lambda i: i.update(assets=[]),
    "links not a list": lambda i: i.update(links={}),
}


@pytest.mark.parametrize("name", BROKEN_ITEMS)
def test_the_compiled_schema_refuses_what_the_models_refuse(naip_item, name):
    """Valid items skip stac-pydantic (the compiled schema vouches for them): a broken one never slips through."""
    from eolake.ingest import _item_problem

    assert _item_problem(naip_item) is None
    assert _item_problem(_broken(naip_item, BROKEN_ITEMS[name])), name


def test_rows_are_stored_as_pypgstac_stores_them_in_yearly_partitions(pg, naip_item, tmp_path):
    """Own COPY writer: dehydrated content and geometry identical to pypgstac's loader's, partitions by year (UTC),
    an item with a collection field and no collection link is valid, a reload rewrites no unchanged row."""
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader

    collection = unique("ingest-yearly")
    ingest([write_ndjson(tmp_path / "c.ndjson", [make_collection(collection)])], pg.dsn())
    with psycopg.connect(pg.dsn()) as conn:
        conn.execute("UPDATE pgstac.collections SET partition_trunc = 'year' WHERE id = %s", (collection,))
    items = []
    for item_id, when in (("y1", "2020-06-01T00:00:00Z"), ("y2", "2021-12-31T23:30:00-02:00")):
        item = make_item(naip_item, item_id, collection)
        item["properties"]["datetime"] = when
        items.append(item)
    source = write_ndjson(tmp_path / "items.ndjson", items)
    assert ingest([source], pg.dsn()).items_loaded == 2

    with PgstacDB(dsn=pg.dsn()) as db:
        expected = {item["id"]: Loader(db).format_item(copy.deepcopy(item)) for item in items}
    rows = query(
        pg,
        "SELECT id, content, encode(st_asewkb(geometry), 'hex'), tableoid::regclass::text FROM pgstac.items"
        " WHERE collection = %s ORDER BY id",
        collection,
    )
    for item_id, content, geometry, partition in rows:
        assert content == json.loads(expected[item_id]["content"])
        assert geometry.upper() == expected[item_id]["geometry"].upper()
        assert partition.endswith(expected[item_id]["partition"].rsplit("_", 1)[-1] if item_id == "y1" else "_2022")

    row_versions = "SELECT id, xmin::text FROM pgstac.items WHERE collection = %s ORDER BY id"
    versions = query(pg, row_versions, collection)
    assert ingest([source], pg.dsn()).items_loaded == 2
    assert query(pg, row_versions, collection) == versions


def test_streamed_batches_wait_for_a_later_collection_and_strict_undoes_written_ones(pg, naip_item, tmp_path):
    """Batches are written while later records are still read: items read before their collection wait for it, and
    a strict load rejected by its last line leaves nothing of the batches written before."""
    collection = unique("ingest-stream")
    items = [make_item(naip_item, f"s{n}", collection) for n in range(5)]
    source = write_ndjson(tmp_path / "items-first.ndjson", [*items, make_collection(collection)])
    report = ingest([source], pg.dsn(), batch_size=2)
    assert report.rejected == [] and (report.collections_loaded, report.items_loaded) == (1, 5)
    assert item_ids(pg, collection) == {f"s{n}" for n in range(5)}

    strict_collection = unique("ingest-stream-strict")
    lines = [make_collection(strict_collection), *(make_item(naip_item, f"t{n}", strict_collection) for n in range(5))]
    source = write_ndjson(tmp_path / "strict.ndjson", [*lines, '{"type": "Feature", "id": '])
    report = ingest([source], pg.dsn(), batch_size=2, strict=True)
    assert report.refused and [r.line for r in report.rejected] == [7]
    assert item_ids(pg, strict_collection) == set()
    assert query(pg, "SELECT count(*) FROM pgstac.collections WHERE id = %s", strict_collection) == [(0,)]
