"""Where pgstac's time goes for each request kind of the scale mix: every statement `search()` runs, EXPLAIN ANALYZEd.

A measurement, not a test. A private cluster with `--items` generated items (bench/generate.py) and eolake's
migrations; then for one request of each kind of bench/scale.py's mix, `pgstac.search()` run with auto_explain
on nested statements (plans with actual times, reported as notices), under the catalog's session settings
(pgstac.context auto, readonly) and under stock's (context off, bookkeeping on); then search()'s median time
per kind, with pgstac hydrating the items or leaving that to the API (`conf.nohydrate`). Prints the statements
that took 1 ms or more with their plan's top lines; `--full` prints every statement's whole plan.

Usage: python bench/explain.py --items 20000 [--full]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
from catalog import console
from generate import generate
from loaders import load_stock, sql
from rich.table import Table
from scale import create_collections, request_mix

from eolake.embedded.postgres import PostgresCluster
from eolake_catalog.settings import READS

MIN_MS = 1.0  # statements shown (all with --full)
SESSIONS = {
    "catalog (context auto, readonly, no parallel workers)": {
        **READS,
        "pgstac.context": "auto",
        "pgstac.context_estimated_count": "1000",
        "pgstac.context_estimated_cost": "10000",
    },
    "stock (context off, bookkeeping)": {"pgstac.context": "off", "pgstac.readonly": "false"},
}


def search_body(req) -> dict:
    if req.body is not None:
        return req.body
    if req.path.startswith("/collections/"):
        _, _, collection, _, item = req.path.split("/")
        return {"collections": [collection], "ids": [item], "limit": 1}
    return {"collections": [req.params["collections"]], "datetime": req.params["datetime"], "limit": 10}


def explain(conn: psycopg.Connection, body: dict, full: bool) -> float:
    plans: list[str] = []
    conn.add_notice_handler(lambda notice: plans.append(notice.message_primary))
    started = time.perf_counter()
    conn.execute("SELECT pgstac.search(%s::jsonb)", (json.dumps(body),)).fetchone()
    seconds = time.perf_counter() - started
    conn._notice_handlers.clear()
    for plan in plans:
        if not plan.startswith("duration:") or (not full and float(plan.split()[1]) < MIN_MS):
            continue
        head, _, rest = plan.partition("\n")
        lines = rest.splitlines()
        query = next((line for line in lines if line.startswith("Query Text:")), "")[:160]
        shown = lines if full else [line for line in lines if "actual time" in line][:4]
        console.print(f"    {head}  {query}")
        for line in shown:
            console.print(f"      {line[:170]}")
    return seconds


def timings(dsn: str, kinds: dict, runs: int = 7) -> None:
    """search() without auto_explain: median ms per kind, items hydrated by pgstac or left to the API."""
    table = Table(title=f"pgstac search() median of {runs} runs, ms (no auto_explain)")
    for col in ("request", *(f"{s} / {h}" for s in SESSIONS for h in ("db hydrates", "api hydrates"))):
        table.add_column(col, justify="right")
    for kind, req in kinds.items():
        row = []
        for settings in SESSIONS.values():
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SET search_path = pgstac, public")
                for name, value in settings.items():
                    conn.execute("SELECT set_config(%s, %s, false)", (name, value))
                for nohydrate in (False, True):
                    body = json.dumps({**search_body(req), "conf": {"nohydrate": nohydrate}})
                    spent = []
                    for _ in range(runs):
                        started = time.perf_counter()
                        conn.execute("SELECT pgstac.search(%s::jsonb)", (body,)).fetchone()
                        spent.append((time.perf_counter() - started) * 1000)
                    row.append(f"{statistics.median(spent):.1f}")
        table.add_row(kind, *row)
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="eolake-bench-explain-", dir="/tmp"))
    workdir.chmod(0o755)
    cluster = PostgresCluster(workdir / "pg")
    try:
        cluster.start()
        cluster.migrate()
        dsn = cluster.dsn()
        create_collections(dsn, eolake=True)
        items = generate(args.items, workdir / "items.ndjson")
        load_stock(workdir / "items.ndjson", dsn)
        sql(dsn, "VACUUM ANALYZE")
        mix = request_mix(40, items, seed=3)
        kinds = {req.name: req for req in mix}
        for session, settings in SESSIONS.items():
            console.rule(session)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SET search_path = pgstac, public")
                for name, value in settings.items():
                    conn.execute("SELECT set_config(%s, %s, false)", (name, value))
                conn.execute("LOAD 'auto_explain'")
                for name, value in {
                    "auto_explain.log_min_duration": "0",
                    "auto_explain.log_analyze": "on",
                    "auto_explain.log_nested_statements": "on",
                    "auto_explain.log_level": "notice",
                    "auto_explain.log_timing": "on",
                    "client_min_messages": "notice",
                }.items():
                    conn.execute("SELECT set_config(%s, %s, false)", (name, value))
                for kind, req in kinds.items():
                    body = search_body(req)
                    console.print(f"  [bold]{kind}[/]: {json.dumps(body)[:150]}")
                    seconds = explain(conn, body, args.full)
                    console.print(f"  -> search() {seconds * 1000:.1f} ms (with auto_explain's own overhead)")
        timings(dsn, kinds)
    finally:
        cluster.stop("fast")
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
