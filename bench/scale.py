"""Search at scale: the /search mix p95 at growing item counts, eolake's catalog against stock stac-fastapi-pgstac.

A measurement, not a test. One private PostgreSQL cluster, two databases loaded with the same generated items
(bench/generate.py: NAIP, Sentinel-2, Landsat, spread in space and time): `stock` has pgstac as pypgstac migrates
it, `eolake` has what eolake's migrations add (queryable indexes from the summaries, the search cache's write
counters). Both are loaded by pypgstac's loader (ingest is measured by bench/catalog.py), then ANALYZEd. Two
servers, separate processes, one worker each: `uvicorn stac_fastapi.pgstac.app:create_app` (defaults) on `stock`,
`python -m eolake_catalog` on `eolake`. At each size the same request sequence is replayed against both by one
in-process client, interleaved in rounds (bench/load.py).

The mix (equal shares, shuffled, fixed seed; nearly every request distinct, so the search cache rarely answers:
the figures measure database work, the cache's gain on repeats is measured by bench/catalog.py):
- `GET /search?collections=C&datetime=<a random month>&limit=10`
- `POST /search` bbox (0.3° x 0.2°) centred on a random item + a five-year interval around its date
- `POST /search` CQL2-JSON filter: NAIP `naip:state = S AND gsd = G`, or Sentinel-2/Landsat
  `eo:cloud_cover < X AND platform = P` (X random to a hundredth)
- `GET /collections/C/items/ID` for a random item

Usage: python bench/scale.py --sizes 10000,100000 [--requests 800] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
from catalog import begin, console, load_average, start_server
from generate import collections, generate
from load import Route, Target, bench_search, percentile
from loaders import load_stock, sql
from rich.table import Table

from eolake.embedded.postgres import PostgresCluster, free_port

KINDS = ("GET /search collection+month", "POST /search bbox+datetime", "POST /search cql2 filter", "GET item")


def request_mix(count: int, items: list[tuple[str, str, list[float], str]], seed: int = 42) -> list[Route]:
    rng = random.Random(seed)
    kinds = [KINDS[i % len(KINDS)] for i in range(count)]
    rng.shuffle(kinds)
    out = []
    for kind in kinds:
        cid, iid, (west, south, east, north), when = rng.choice(items)
        year = int(when[:4])
        if kind == KINDS[0]:
            month = rng.randint(1, 12)
            end = f"{year + month // 12}-{month % 12 + 1:02d}-01T00:00:00Z"
            out.append(
                Route(
                    kind,
                    "GET",
                    "/search",
                    params={"collections": cid, "datetime": f"{year}-{month:02d}-01T00:00:00Z/{end}", "limit": "10"},
                )
            )
        elif kind == KINDS[1]:
            x, y = (west + east) / 2, (south + north) / 2
            out.append(
                Route(
                    kind,
                    "POST",
                    "/search",
                    body={
                        "collections": [cid],
                        "limit": 10,
                        "bbox": [round(x - 0.15, 4), round(y - 0.1, 4), round(x + 0.15, 4), round(y + 0.1, 4)],
                        "datetime": f"{year - 2}-01-01T00:00:00Z/{year + 2}-12-31T23:59:59Z",
                    },
                )
            )
        elif kind == KINDS[2]:
            out.append(
                Route(
                    kind,
                    "POST",
                    "/search",
                    body={"collections": [cid], "limit": 10, "filter-lang": "cql2-json", "filter": _filter(rng, cid)},
                )
            )
        else:
            out.append(Route(kind, "GET", f"/collections/{cid}/items/{iid}"))
    return out


def _filter(rng: random.Random, cid: str) -> dict:
    if cid == "naip":
        from generate import STATES

        return {
            "op": "and",
            "args": [
                {"op": "=", "args": [{"property": "naip:state"}, rng.choice(STATES)]},
                {"op": "=", "args": [{"property": "gsd"}, rng.choice([0.3, 0.6, 1.0])]},
            ],
        }
    platform = (
        rng.choice(["Sentinel-2A", "Sentinel-2B"])
        if cid == "sentinel-2-l2a"
        else rng.choice(["landsat-7", "landsat-8", "landsat-9"])
    )
    return {
        "op": "and",
        "args": [
            {"op": "<", "args": [{"property": "eo:cloud_cover"}, round(rng.uniform(1, 20), 2)]},
            {"op": "=", "args": [{"property": "platform"}, platform]},
        ],
    }


# --------------------------------------------------------------------------------------------- databases


def stock_database(cluster: PostgresCluster) -> str:
    """A second database with pgstac only, as pypgstac migrates it."""
    from pypgstac.db import PgstacDB
    from pypgstac.migrate import Migrate

    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute('CREATE DATABASE "stock"')
    dsn = cluster.dsn("stock")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    with PgstacDB(dsn=dsn) as db:
        Migrate(db).run_migration()
    return dsn


def create_collections(dsn: str, eolake: bool) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for collection in collections().values():
            conn.execute("SELECT pgstac.create_collection(%s::jsonb)", (json.dumps(collection),))
    if eolake:  # what `eolake up`, the Kubernetes schema Job and the on-premise migration run
        from eolake_catalog.schema import index_collections

        index_collections(dsn)


def grow(dsns: list[str], have: int, want: int, workdir: Path) -> list[tuple[str, str, list[float], str]]:
    path = workdir / f"items-{have}-{want}.ndjson"
    written = generate(want, path, start=have)
    for dsn in dsns:
        started = time.perf_counter()
        load_stock(path, dsn)
        sql(dsn, "VACUUM ANALYZE")
        console.print(
            f"  loaded {want - have:,} items into {urlsplit(dsn).path} in "
            f"{time.perf_counter() - started:.1f} s (pypgstac load + VACUUM ANALYZE)"
        )
    path.unlink()
    return written


# --------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000", help="item counts, ascending, comma-separated")
    parser.add_argument("--requests", type=int, default=800, help="measured requests per target and size")
    parser.add_argument("--warmup", type=int, default=40, help="warm-up requests per target and size")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=150, help="budget per target and size (truncated)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    return args


def main() -> int:
    args = parse_args()
    command = begin("scale.py", "eolake scale benchmark")
    workdir = Path(tempfile.mkdtemp(prefix="eolake-bench-scale-", dir="/tmp"))
    workdir.chmod(0o755)
    cluster = PostgresCluster(workdir / "pg")
    figures: dict = {"command": command, "load_average_before": load_average(), "sizes": {}}
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(lambda: cluster.stop("fast") if cluster.initialized else None)
            cluster.start()
            cluster.migrate()
            ours, stock = cluster.dsn(), stock_database(cluster)
            create_collections(ours, eolake=True)
            create_collections(stock, eolake=False)
            targets = start_targets(stack, ours, stock, workdir)
            items: list = []
            for size in args.sizes:
                console.rule(f"{size:,} items")
                items += grow([ours, stock], len(items), size, workdir)
                figures["sizes"][size] = measure(targets, items, args, size)
            figures["load_average_after"] = load_average()
            report(figures, args)
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2))
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def start_targets(stack: contextlib.ExitStack, ours: str, stock: str, workdir: Path) -> list[Target]:
    parts = urlsplit(stock)
    port = free_port()
    stock_server = start_server(
        stack,
        "stock stac-fastapi-pgstac",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "stac_fastapi.pgstac.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        {
            "PGUSER": unquote(parts.username),
            "PGPASSWORD": unquote(parts.password),
            "PGHOST": parts.hostname,
            "PGPORT": str(parts.port),
            "PGDATABASE": "stock",
        },
        port,
        "/",
        workdir,
    )
    port = free_port()
    catalog = start_server(
        stack,
        "eolake catalog",
        [sys.executable, "-m", "eolake_catalog"],
        {
            "EOLAKE_CATALOG_DATABASE_URL": ours,
            "EOLAKE_CATALOG_PORT": str(port),
            "EOLAKE_CATALOG_HOST": "127.0.0.1",
            "EOLAKE_CATALOG_WORKERS": "1",
            "EOLAKE_CATALOG_POOL_SIZE": "13",
            "EOLAKE_CATALOG_PUBLIC_URL": f"http://127.0.0.1:{port}",
        },
        port,
        "/readyz",
        workdir,
    )
    return [Target("stock stac-fastapi-pgstac", stock_server.url), Target("eolake catalog", catalog.url)]


def measure(targets: list[Target], items: list, args: argparse.Namespace, size: int) -> dict:
    reqs = request_mix(args.requests, items, seed=size)
    warmup = request_mix(args.warmup, items, seed=size + 1)
    load_before = load_average()
    checks, results = asyncio.run(
        bench_search(targets, reqs, warmup, args.concurrency, args.rounds, args.max_seconds, "gzip, deflate, br")
    )
    distinct = len({json.dumps([r.method, r.path, r.params, r.body], sort_keys=True) for r in reqs})
    out = {
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "distinct_requests": distinct,
        "requests": len(reqs),
        "sanity": checks,
        "targets": {},
    }
    for result in results:
        ok = [s.seconds for s in result.samples if s.status == 200]
        out["targets"][result.name] = {
            "measured": len(result.samples),
            "errors": sum(s.status != 200 for s in result.samples),
            "truncated": result.truncated,
            "errors_seen": result.error_examples,
            "req_per_s": len(result.samples) / result.busy_seconds if result.busy_seconds else 0,
            "p50_ms": percentile(ok, 50) * 1000,
            "p95_ms": percentile(ok, 95) * 1000,
            "by_kind": {
                kind: percentile([s.seconds for s in result.samples if s.status == 200 and s.route == kind], 95) * 1000
                for kind in {s.route for s in result.samples}
            },
        }
    return out


def report(figures: dict, args: argparse.Namespace) -> None:
    table = Table(title="/search mix at scale: p95 ms (p50), req/s; side by side, same requests, interleaved")
    for col in (
        "items",
        "target",
        "p95 ms",
        "p50 ms",
        "req/s",
        "errors",
        "p95 vs stock",
        "p95 vs its 1st size",
        *KINDS,
    ):
        table.add_column(col, justify="right")
    first: dict[str, float] = {}
    for size, at in figures["sizes"].items():
        stock = at["targets"]["stock stac-fastapi-pgstac"]
        for name, row in at["targets"].items():
            first.setdefault(name, row["p95_ms"])
            table.add_row(
                f"{size:,}",
                name + (" (truncated)" if row["truncated"] else ""),
                f"{row['p95_ms']:.0f}",
                f"{row['p50_ms']:.0f}",
                f"{row['req_per_s']:.1f}",
                str(row["errors"]),
                f"{row['p95_ms'] / stock['p95_ms']:.2f}x",
                f"{row['p95_ms'] / first[name]:.2f}x",
                *[f"{row['by_kind'].get(k, float('nan')):.0f}" for k in KINDS],
            )
    console.print(table)
    for size, at in figures["sizes"].items():
        console.print(
            f"{size:,} items: {at['distinct_requests']} distinct of {at['requests']} requests; load average "
            f"{at['load_average_before']} before, {at['load_average_after']} after; sanity {at['sanity']}"
        )
        for name, row in at["targets"].items():
            for example in row["errors_seen"]:
                console.print(f"[red]error[/] {name}: {example}")
    console.print(f"command: {figures['command']}; load average after: {figures['load_average_after']}")


if __name__ == "__main__":
    sys.exit(main())
