"""`eolake ingest` from the command line: what a user sees for good and bad files."""

from __future__ import annotations

import json

import psycopg

from eolake.cli import main as cli
from eolake.embedded.postgres import free_port


def feature(iid: str, collection: str) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": iid,
        "collection": collection,
        "links": [],
        "assets": {},
        "bbox": [1, 43, 2, 44],
        "properties": {"datetime": "2023-01-01T00:00:00Z"},
        "geometry": {"type": "Point", "coordinates": [1.5, 43.5]},
    }


def collection(cid: str) -> dict:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": cid,
        "description": "cli test",
        "license": "MIT",
        "links": [],
        "extent": {"spatial": {"bbox": [[1, 43, 2, 44]]}, "temporal": {"interval": [["2023-01-01T00:00:00Z", None]]}},
    }


def test_ingest_reports_file_and_line_and_exit_codes(pg, tmp_path, capsys):
    source = tmp_path / "items.ndjson"
    lines = [
        json.dumps(collection("cli-c")),
        json.dumps(feature("ok-1", "cli-c")),
        "{not json",
        json.dumps(feature("lost", "no-such-collection")),
    ]
    source.write_text("\n".join(lines) + "\n")

    assert cli(["ingest", "--strict", "--dsn", pg.dsn(), str(source)]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and f"{source}:3" in out and f"{source}:4 [lost]" in out
    with psycopg.connect(pg.dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM pgstac.collections WHERE id = 'cli-c'").fetchone()[0] == 0

    assert cli(["ingest", "--dsn", pg.dsn(), str(source)]) == 1
    out = capsys.readouterr().out
    assert "Loaded 1 collection(s) and 1 item(s)" in out and "2 record(s) rejected" in out
    with psycopg.connect(pg.dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM pgstac.items WHERE collection = 'cli-c'").fetchone()[0] == 1

    good = tmp_path / "good.ndjson"
    good.write_text(json.dumps(feature("ok-2", "cli-c")) + "\n")
    assert cli(["ingest", "--dsn", pg.dsn(), str(good)]) == 0


def test_ingest_missing_path_is_a_clear_error(pg, tmp_path, capsys):
    assert cli(["ingest", "--dsn", pg.dsn(), str(tmp_path / "nope.ndjson")]) == 2
    assert "nope.ndjson" in capsys.readouterr().err


def test_ingest_without_database_says_how_to_get_one(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("EOLAKE_DATABASE_URL", raising=False)
    assert cli(["--state-dir", str(tmp_path), "ingest", str(tmp_path / "x.ndjson")]) == 2
    assert "eolake up" in capsys.readouterr().err


def test_ingest_with_unreachable_database_is_a_clear_error(tmp_path, capsys):
    source = tmp_path / "c.ndjson"
    source.write_text(json.dumps(collection("never")) + "\n")
    dsn = f"postgresql://nobody:x@127.0.0.1:{free_port()}/none"
    assert cli(["ingest", "--dsn", dsn, str(source)]) == 2
    assert "cannot reach the database" in capsys.readouterr().err
