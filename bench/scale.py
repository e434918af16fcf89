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

A second mix, `repeated`, replays the same kinds but half of its requests are one of 40 popular queries (10 of each
kind, drawn uniformly; the same pool in the warm-up), the other half new: the search cache's gain next to the
database work, in the same run, at the same workers.

`--partitions none,year` adds one eolake database per partitioning (`year`, `month`: pgstac's `partition_trunc`
set on every collection before the load), each behind its own catalog process, measured interleaved with the
others. `--no-stock` leaves stock out (to compare partitionings only). With every figure: the CPU each target's
server and the database used per request (from /proc, while that target ran alone) and the bytes per 1,000 items
of each database's items (table, partitions and indexes).

Usage: python bench/scale.py --sizes 10000,100000 [--requests 800] [--partitions none,year] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
from catalog import begin, console, load_average, private_cluster, start_server
from generate import collections, generate
from load import Route, Target, bench_search, cpu_seconds, percentile
from loaders import load_stock, sql
from rich.table import Table

from eolake.embedded.postgres import PostgresCluster, free_port

KINDS = ("GET /search collection+month", "POST /search bbox+datetime", "POST /search cql2 filter", "GET item")
STOCK = "stock stac-fastapi-pgstac"
PARTITIONINGS = ("none", "year", "month")
GENERATE_CHUNK = 250_000  # items generated and loaded at a time: a 1M-item file would be 6 GB


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


def repeated_mix(count: int, items: list, seed: int, share: float = 0.5, popular: int = 40) -> list[Route]:
    """`request_mix`'s requests, `share` of them replaced by one of `popular` queries (the same pool for a seed of
    the same size: the warm-up and the measured run ask the same popular queries)."""
    pool = request_mix(popular, items, seed=len(items) + 7)
    rng = random.Random(seed)
    return [rng.choice(pool) if rng.random() < share else r for r in request_mix(count, items, seed=seed)]


MIXES = {"unique": lambda count, items, seed: request_mix(count, items, seed=seed), "repeated": repeated_mix}


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


def partitioned_copy(cluster: PostgresCluster, partition: str) -> str:
    """A copy of the (still empty) eolake database whose collections are partitioned by `partition` in time."""
    name = f"eolake_{partition}"
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "eolake"')
    dsn = cluster.dsn(name)
    sql(dsn, "UPDATE pgstac.collections SET partition_trunc = %s", (partition,))
    return dsn


def grow(dsns: list[str], have: int, want: int, workdir: Path) -> list[tuple[str, str, list[float], str]]:
    written: list = []
    for start in range(have, want, GENERATE_CHUNK):
        end = min(want, start + GENERATE_CHUNK)
        path = workdir / f"items-{start}-{end}.ndjson"
        written += generate(end, path, start=start)
        for dsn in dsns:
            started = time.perf_counter()
            load_stock(path, dsn)
            console.print(
                f"  loaded {end - start:,} items into {urlsplit(dsn).path} in "
                f"{time.perf_counter() - started:.1f} s (pypgstac load)"
            )
        path.unlink()
    for dsn in dsns:
        sql(dsn, "VACUUM ANALYZE")
    return written


def items_bytes(dsn: str) -> dict[str, int]:
    """The items' storage: heap and TOAST of every partition, and their indexes (pgstac's and eolake's)."""
    row = sql(
        dsn,
        "SELECT json_build_object('table', sum(pg_table_size(relid)), 'indexes', sum(pg_indexes_size(relid)), "
        "'partitions', count(*) FILTER (WHERE isleaf)) FROM pg_partition_tree('pgstac.items')",
    )
    return {k: int(v) for k, v in row.items()}


# --------------------------------------------------------------------------------------------- CPU


def postmaster_pid(cluster: PostgresCluster) -> int:
    return int((cluster.data / "postmaster.pid").read_text().split("\n", 1)[0])


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
    parser.add_argument("--mixes", default="unique,repeated", help=f"of {', '.join(MIXES)}, comma-separated")
    parser.add_argument(
        "--partitions",
        default="none",
        help=f"eolake databases by time partitioning, of {', '.join(PARTITIONINGS)}, comma-separated",
    )
    parser.add_argument("--stock", action=argparse.BooleanOptionalAction, default=True, help="measure stock too")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    args.mixes = args.mixes.split(",")
    args.partitions = args.partitions.split(",")
    for chosen, known in ((args.mixes, MIXES), (args.partitions, PARTITIONINGS)):
        if unknown := set(chosen) - set(known):
            parser.error(f"unknown {', '.join(sorted(unknown))} (known: {', '.join(known)})")
    if "none" not in args.partitions:
        parser.error("--partitions must include none (the eolake database the others are copied from)")
    return args


def main() -> int:
    args = parse_args()
    command = begin("scale.py", "eolake scale benchmark")
    figures: dict = {"command": command, "load_average_before": load_average(), "sizes": {}}
    try:
        with private_cluster("scale") as (workdir, cluster, stack):
            ours = {"none": cluster.dsn()}
            create_collections(ours["none"], eolake=True)
            ours |= {p: partitioned_copy(cluster, p) for p in args.partitions if p != "none"}
            stock = stock_database(cluster) if args.stock else None
            if stock:
                create_collections(stock, eolake=False)
            targets, roots = start_targets(stack, ours, stock, workdir)
            roots["database"] = [postmaster_pid(cluster)]
            items: list = []
            for size in args.sizes:
                console.rule(f"{size:,} items")
                dsns = {**{catalog_name(p): dsn for p, dsn in ours.items()}, **({STOCK: stock} if stock else {})}
                items += grow(list(dsns.values()), len(items), size, workdir)
                at: dict = {"bytes": {name: items_bytes(dsn) for name, dsn in dsns.items()}}
                for mix in args.mixes:
                    console.print(f"  mix: {mix}")
                    at[mix] = measure(targets, roots, dsns, items, args, size, mix)
                figures["sizes"][size] = at
            figures["load_average_after"] = load_average()
            report(figures, args)
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2))
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    return 0


def catalog_name(partition: str) -> str:
    return "eolake catalog" + ("" if partition == "none" else f" ({partition} partitions)")


def start_targets(
    stack: contextlib.ExitStack, ours: dict[str, str], stock: str | None, workdir: Path
) -> tuple[list[Target], dict[str, list[int]]]:
    """The servers, and the root process of each (its CPU is read with its descendants')."""
    targets, roots = [], {}
    if stock:
        server = start_stock(stack, stock, workdir)
        targets.append(Target(STOCK, server.url))
        roots[STOCK] = [server.proc.pid]
    for partition, dsn in ours.items():
        name = catalog_name(partition)
        server = start_catalog(stack, name, dsn, workdir)
        targets.append(Target(name, server.url))
        roots[name] = [server.proc.pid]
    return targets, roots


def start_stock(stack: contextlib.ExitStack, stock: str, workdir: Path):
    parts = urlsplit(stock)
    port = free_port()
    return start_server(
        stack,
        STOCK,
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


def start_catalog(stack: contextlib.ExitStack, name: str, dsn: str, workdir: Path):
    port = free_port()
    return start_server(
        stack,
        name,
        [sys.executable, "-m", "eolake_catalog"],
        {
            "EOLAKE_CATALOG_DATABASE_URL": dsn,
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


def blocks(dsn: str) -> dict[str, float]:
    """Blocks (8 KiB) the database's queries found in the shared buffers and read from the OS, so far."""
    row = sql(
        dsn,
        "SELECT json_build_object('hit', blks_hit, 'read', blks_read) FROM pg_stat_database "
        "WHERE datname = current_database()",
    )
    return {"blocks hit": float(row["hit"]), "blocks read": float(row["read"])}


def measure(
    targets: list[Target],
    roots: dict[str, list[int]],
    dsns: dict[str, str],
    items: list,
    args: argparse.Namespace,
    size: int,
    mix: str,
) -> dict:
    reqs = MIXES[mix](args.requests, items, size)
    warmup = MIXES[mix](args.warmup, items, size + 1)
    load_before = load_average()

    def probe(name: str) -> dict[str, float]:
        return {"server": cpu_seconds(roots[name]), "database": cpu_seconds(roots["database"]), **blocks(dsns[name])}

    checks, results = asyncio.run(
        bench_search(targets, reqs, warmup, args.concurrency, args.rounds, args.max_seconds, "gzip, deflate, br", probe)
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
            "cpu_ms_per_request": {
                group: 1000 * spent / len(result.samples)
                for group, spent in result.used.items()
                if not group.startswith("blocks")
            },
            "blocks_per_request": {
                group.removeprefix("blocks "): spent / len(result.samples)
                for group, spent in result.used.items()
                if group.startswith("blocks")
            },
            "by_kind": {
                kind: percentile([s.seconds for s in result.samples if s.status == 200 and s.route == kind], 95) * 1000
                for kind in {s.route for s in result.samples}
            },
        }
    return out


def report(figures: dict, args: argparse.Namespace) -> None:
    for mix in args.mixes:
        report_mix(figures, mix)
    for size, at in figures["sizes"].items():
        for mix in args.mixes:
            m = at[mix]
            console.print(
                f"{size:,} items, {mix}: {m['distinct_requests']} distinct of {m['requests']} requests; load "
                f"average {m['load_average_before']} before, {m['load_average_after']} after; sanity {m['sanity']}"
            )
            for name, row in m["targets"].items():
                for example in row["errors_seen"]:
                    console.print(f"[red]error[/] {name}: {example}")
        for name, stored in at["bytes"].items():
            per_k = (stored["table"] + stored["indexes"]) / (size / 1000)
            console.print(
                f"{size:,} items, {name}: items table {stored['table'] / 2**20:,.0f} MiB + indexes "
                f"{stored['indexes'] / 2**20:,.0f} MiB in {stored['partitions']} partitions = {per_k / 2**20:.2f} "
                "MiB per 1,000 items"
            )
    console.print(f"command: {figures['command']}; load average after: {figures['load_average_after']}")


def report_mix(figures: dict, mix: str) -> None:
    table = Table(title=f"/search mix ({mix}) at scale: p95 ms (p50), req/s; same requests, interleaved")
    for col in (
        "items",
        "target",
        "p95 ms",
        "p50 ms",
        "req/s",
        "errors",
        "req/s vs ref",
        "p95 vs ref",
        "p95 vs its 1st size",
        "server CPU ms/req",
        "db CPU ms/req",
        "db blocks/req (read)",
        *KINDS,
    ):
        table.add_column(col, justify="right")
    first: dict[str, float] = {}
    nan = float("nan")
    for size, at in figures["sizes"].items():
        rows = at[mix]["targets"]
        ref = rows.get(STOCK) or next(iter(rows.values()))  # stock, else the first target
        for name, row in rows.items():
            first.setdefault(name, row["p95_ms"])
            cpu = row["cpu_ms_per_request"]
            table.add_row(
                f"{size:,}",
                name + (" (truncated)" if row["truncated"] else ""),
                f"{row['p95_ms']:.0f}",
                f"{row['p50_ms']:.0f}",
                f"{row['req_per_s']:.1f}",
                str(row["errors"]),
                f"{row['req_per_s'] / ref['req_per_s']:.2f}x",
                f"{row['p95_ms'] / ref['p95_ms']:.2f}x",
                f"{row['p95_ms'] / first[name]:.2f}x",
                f"{cpu.get('server', float('nan')):.1f}",
                f"{cpu.get('database', float('nan')):.1f}",
                "{hit:.0f} ({read:.1f})".format(**{"hit": nan, "read": nan, **row["blocks_per_request"]}),
                *[f"{row['by_kind'].get(k, float('nan')):.0f}" for k in KINDS],
            )
    console.print(table)
    console.print("ref: stock stac-fastapi-pgstac when measured, else the first target (eolake, no time partitions)")


if __name__ == "__main__":
    sys.exit(main())
