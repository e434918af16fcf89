"""Ingest: `eolake ingest` (validating every record) against stock `pypgstac load` on the same generated items.

A measurement, not a test. One private PostgreSQL cluster, two databases: `eolake` (pgstac + eolake's migrations,
loaded by `eolake.ingest.ingest`) and `stock` (pgstac as pypgstac migrates it, loaded by pypgstac's
`PgstacCLI.load("items", FILE, method=upsert)`, what `pypgstac load items FILE --method upsert` runs, in process
like ours). The items come from bench/generate.py (NAIP, Sentinel-2, Landsat; the collections already exist).

Every run, for each loader in turn (the order alternating from run to run): **fresh** (the collections are deleted,
pgstac drops their items and partitions, then created again: every item is new), then **reload** (the same file
again: every item is already there, identical). A `CHECKPOINT` precedes every timed call, so no loader pays for the
other's dirty pages; the load average is recorded with every run. items/s = items / wall time of the call; the
item count is checked after every call.

Usage: python bench/ingest.py [--items 20000] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import psycopg
from catalog import begin, console, load_average, private_cluster
from generate import collections, generate
from loaders import load_ours, load_stock
from rich.table import Table
from scale import create_collections, stock_database

SCENARIOS = ("fresh", "reload")


LOADERS = {"eolake ingest": load_ours, "pypgstac load": load_stock}


def reset(dsn: str, eolake: bool) -> None:
    """Delete the generated collections with their items and partitions, then create them again, empty."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for cid in collections():
            if conn.execute("SELECT 1 FROM pgstac.collections WHERE id = %s", (cid,)).fetchone():
                conn.execute("SELECT pgstac.delete_collection(%s)", (cid,))
    create_collections(dsn, eolake)


def count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM pgstac.items").fetchone()[0]


def timed(name: str, path: Path, dsn: str, n_items: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    started = time.perf_counter()
    loaded = LOADERS[name](path, dsn)
    seconds = time.perf_counter() - started
    found = count(dsn)
    if found != n_items or loaded not in (-1, n_items):
        raise RuntimeError(f"{name}: {found} items in the database after loading {n_items}")
    return seconds


def bench(dsns: dict[str, str], path: Path, n_items: int, runs: int) -> list[dict]:
    rows = []
    names = list(LOADERS)
    for run in range(runs):
        for name in names if run % 2 == 0 else names[::-1]:
            reset(dsns[name], eolake=name == names[0])
            for scenario in SCENARIOS:
                before = load_average()
                seconds = timed(name, path, dsns[name], n_items)
                rows.append(
                    {
                        "run": run + 1,
                        "loader": name,
                        "scenario": scenario,
                        "seconds": seconds,
                        "items_per_s": n_items / seconds,
                        "load_average": before,
                    }
                )
                console.print(
                    f"  run {run + 1}/{runs} {scenario:6} {name:14} {seconds:6.2f} s "
                    f"{n_items / seconds:8.0f} items/s   (load average {before})"
                )
    return rows


def summary(rows: list[dict]) -> dict:
    names = list(LOADERS)
    out = {}
    for scenario in SCENARIOS:
        medians = {
            name: statistics.median(r["items_per_s"] for r in rows if r["scenario"] == scenario and r["loader"] == name)
            for name in names
        }
        out[scenario] = {"medians": medians, "ratio": medians[names[0]] / medians[names[1]]}
    return out


def report(rows: list[dict], figures: dict) -> None:
    table = Table(title="ingest, items/s (every run; median; ratio of medians eolake / pypgstac)")
    for column in ("scenario", "loader", "runs", "median", "ratio"):
        table.add_column(column, justify="left" if column in ("scenario", "loader", "runs") else "right")
    for scenario, result in figures.items():
        for name, median in result["medians"].items():
            runs = ", ".join(
                f"{r['items_per_s']:.0f}" for r in rows if r["scenario"] == scenario and r["loader"] == name
            )
            ratio = f"{result['ratio']:.2f}x" if name == next(iter(LOADERS)) else "1.00x"
            table.add_row(scenario, name, runs, f"{median:,.0f}", ratio)
    console.print(table)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3, help="runs per loader and scenario")
    parser.add_argument("--json", type=Path)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    command = begin("ingest.py", "eolake ingest benchmark")
    try:
        with private_cluster("ingest") as (workdir, cluster, _):
            dsns = {"eolake ingest": cluster.dsn(), "pypgstac load": stock_database(cluster)}
            path = workdir / "items.ndjson"
            generate(args.items, path)
            console.print(f"{args.items:,} items, {path.stat().st_size / 1e6:.1f} MB")
            rows = bench(dsns, path, args.items, args.runs)
            figures = summary(rows)
            report(rows, figures)
            console.print(f"command: {command}\nload average after: {load_average()}")
            if args.json:
                args.json.write_text(json.dumps({"command": command, "runs": rows, "summary": figures}, indent=2))
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
