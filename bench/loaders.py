"""Ingest side of the benchmark: the item set, and eolake ingest against stock pypgstac load."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg
from load import COLLECTION, console

from eolake.paths import SHARED_DATA

DATA = SHARED_DATA / "stac"
ITEMS = DATA / "naip" / "items.ndjson"
COLLECTIONS = DATA / "pc-collections" / "collections.ndjson"


def make_items(source: Path, count: int, out: Path) -> tuple[list[str], list[tuple[list[float], int]]]:
    """Write `count` items to `out`: the source items, then copies with ids suffixed -r1, -r2…

    Returns the ids written and (bbox, year) of the source items used."""
    originals = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    places = [(obj["bbox"], int(obj["properties"]["datetime"][:4])) for obj in originals[:count]]
    ids = []
    with out.open("w") as f:
        for n in range(count):
            copy, item = divmod(n, len(originals))
            obj = json.loads(json.dumps(originals[item])) if copy else originals[item]
            if copy:
                obj["id"] = f"{obj['id']}-r{copy}"
                obj["links"] = [link for link in obj.get("links", []) if link.get("rel") != "self"]
            ids.append(obj["id"])
            f.write(json.dumps(obj, separators=(",", ":")) + "\n")
    return ids, places


def collection_json() -> str:
    for line in COLLECTIONS.read_text().splitlines():
        if line.strip() and json.loads(line)["id"] == COLLECTION:
            return line
    raise SystemExit(f"collection {COLLECTION!r} not in {COLLECTIONS}")


def reset_collection(dsn: str, collection: str) -> None:
    """Delete the collection (pgstac drops its items and partition) and create it again, empty."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pgstac.collections WHERE id = %s", (COLLECTION,)).fetchone():
            conn.execute("SELECT pgstac.delete_collection(%s)", (COLLECTION,))
        conn.execute("SELECT pgstac.create_collection(%s::jsonb)", (collection,))


def sql(dsn: str, statement: str, params: tuple = ()) -> Any:
    """Run one statement; the first column of its first row, if it returns rows."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        row = cur.fetchone() if cur.description else None
        return row[0] if row else None


def count_items(dsn: str) -> int:
    return sql(dsn, "SELECT count(*) FROM pgstac.items WHERE collection = %s", (COLLECTION,))


# --------------------------------------------------------------------------------------------- ingest


def load_ours(path: Path, dsn: str) -> int:
    from eolake.ingest import ingest

    report = ingest([path], dsn)
    if report.rejected or report.refused:
        raise RuntimeError(f"eolake ingest rejected {len(report.rejected)} record(s): {report.rejected[:3]}")
    return report.items_loaded


def load_stock(path: Path, dsn: str) -> int:
    from pypgstac.load import Methods
    from pypgstac.pypgstac import PgstacCLI

    cli = PgstacCLI(dsn=dsn)  # exactly what `pypgstac load items FILE --method upsert --dsn DSN` runs
    try:
        cli.load("items", str(path), method=Methods.upsert)
    finally:
        cli._db.close()
    return -1


LOADERS = {"eolake ingest": load_ours, "pypgstac load (upsert)": load_stock}


def bench_ingest(dsn: str, items_file: Path, n_items: int, runs: int, collection: str) -> dict:
    results: dict[str, dict[str, list[float]]] = {}
    names = list(LOADERS)
    for scenario in ("fresh", "reload"):
        results[scenario] = {name: [] for name in names}
        if scenario == "reload":
            reset_collection(dsn, collection)
            load_stock(items_file, dsn)  # untimed: the state every reload run starts from
        for run in range(runs):
            for name in names if run % 2 == 0 else reversed(names):
                if scenario == "fresh":
                    reset_collection(dsn, collection)
                sql(dsn, "CHECKPOINT")
                started = time.perf_counter()
                loaded = LOADERS[name](items_file, dsn)
                seconds = time.perf_counter() - started
                found = count_items(dsn)
                if found != n_items or loaded not in (-1, n_items):
                    raise RuntimeError(f"{name}: {found} items in the database after loading {n_items}")
                rate = n_items / seconds
                results[scenario][name].append(rate)
                console.print(
                    f"  ingest {scenario:6} run {run + 1}/{runs} {name:24} {seconds:6.2f} s {rate:8.0f} items/s"
                )
    return results
