"""Catalog benchmark: eolake ingest vs stock pypgstac, and /search on stock stac-fastapi-pgstac vs our catalog.

A measurement, not a test: it never asserts timings. One run, one private PostgreSQL+PostGIS cluster, the same
data for everything:

1. Ingest items/s on NAIP items (the 1,000 real ones, repeated with new ids up to --items): our
   `eolake.ingest.ingest` (validation + pypgstac Loader upsert in batches of 10,000) against the stock way,
   `pypgstac load items FILE --method upsert` called in-process (`PgstacCLI(dsn).load(...)`, what the CLI runs,
   without the interpreter start-up). Two scenarios, each run --runs times, loaders alternating first:
   "fresh" (the collection is deleted and re-created before every run: every item is new) and "reload" (every
   item already there, identical: the idempotent re-ingest). A CHECKPOINT precedes every timed run.
2. /search requests/s and p50/p95 latency of (a) stock stac-fastapi-pgstac with its default settings
   (uvicorn, 1 worker, read pool max 10), (b) our catalog service directly (1 worker, read pool 10) and
   (c) our catalog through the local gateway: the same request sequence for every target, replayed by an
   in-process asyncio httpx client at fixed concurrency, interleaved in rounds so drift hits all alike.

Usage: python bench/catalog.py [--requests N] [--concurrency C] [--items N] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from load import KINDS, Target, TargetResult, bench_search, percentile, request_mix
from loaders import ITEMS, bench_ingest, collection_json, load_stock, make_items, reset_collection, sql
from rich.console import Console
from rich.table import Table

from eolake.embedded import processes
from eolake.embedded.postgres import PostgresCluster, free_port

STOCK_READ_POOL = 10  # stac_fastapi.pgstac.config.PostgresSettings.db_max_conn_size

# Not a terminal (a log, CI): wide enough for the tables rather than rich's default 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)


# --------------------------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    url: str
    log: Path


def clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EOLAKE_", "PG"))
        and k not in ("DATABASE_URL", "ENABLED_EXTENSIONS", "ENABLE_TRANSACTIONS_EXTENSIONS")
    }


def start_server(
    stack: contextlib.ExitStack,
    name: str,
    cmd: list[str],
    env: dict[str, str],
    port: int,
    probe: str,
    workdir: Path,
    timeout: float = 60,
) -> Server:
    log = workdir / f"{name.replace(' ', '-')}.log"
    url = f"http://127.0.0.1:{port}"
    # Own session: a Ctrl-C reaches only this script, which then stops the servers itself.
    proc = stack.enter_context(
        processes.serving(
            cmd, url, log, probe, {**clean_env(), **env}, timeout, processes.ok, cwd=workdir, start_new_session=True
        )
    )
    return Server(name, proc, url, log)


# --------------------------------------------------------------------------------------------- report


def versions(dsn: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("pypgstac", "stac-fastapi-pgstac", "stac-fastapi-api", "uvicorn", "httpx", "asyncpg"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    out["pgstac"] = sql(dsn, "SELECT pgstac.get_version()")
    out["postgresql"] = sql(dsn, "SHOW server_version")
    out["postgis"] = sql(dsn, "SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
    return out


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def load_average() -> str:
    with contextlib.suppress(OSError, AttributeError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "?"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def summarise_search(results: list[TargetResult]) -> list[dict]:
    rows = []
    for result in results:
        ok = [s.seconds for s in result.samples if s.status == 200]
        rows.append(
            {
                "target": result.name,
                "requests": len(result.samples),
                "errors": len(result.samples) - len(ok),
                "seconds": result.busy_seconds,
                "req_per_s": len(result.samples) / result.busy_seconds if result.busy_seconds else 0.0,
                "p50_ms": percentile(ok, 50) * 1000,
                "p95_ms": percentile(ok, 95) * 1000,
                "p99_ms": percentile(ok, 99) * 1000,
                "truncated": result.truncated,
                "error_examples": result.error_examples,
                "by_kind": {
                    kind: {
                        f"p{q}_ms": percentile(
                            [s.seconds for s in result.samples if s.status == 200 and s.route == kind], q
                        )
                        * 1000
                        for q in (50, 95)
                    }
                    for kind in KINDS
                },
            }
        )
    return rows


def print_ingest(ingest: dict, n_items: int, source: str) -> dict:
    table = Table(title=f"Ingest: {n_items:,} NAIP items ({source}), median of the runs")
    for col in ("scenario", "loader", "runs (items/s)", "median items/s", "ours / stock"):
        table.add_column(col, justify="right" if col != "loader" else "left")
    summary = {}
    for scenario, by_loader in ingest.items():
        medians = {name: statistics.median(rates) for name, rates in by_loader.items()}
        ours, stock = medians["eolake ingest"], medians["pypgstac load (upsert)"]
        summary[scenario] = {"runs": by_loader, "median": medians, "ratio_ours_over_stock": ours / stock}
        for name, rates in by_loader.items():
            table.add_row(
                scenario,
                name,
                ", ".join(f"{r:.0f}" for r in rates),
                f"{medians[name]:,.0f}",
                ratio(ours, stock) if name == "eolake ingest" else "",
            )
    console.print(table)
    return summary


def print_search(rows: list[dict], checks: list[dict], args: argparse.Namespace) -> None:
    table = Table(title="Sanity: one request of each kind (features returned, or the item id)")
    table.add_column("request")
    for name in rows_names(rows):
        table.add_column(name, justify="right")
    for check in checks:
        table.add_row(check["kind"], *[str(check[name]) for name in rows_names(rows)])
    console.print(table)
    for check in checks:
        if len({str(check[name]) for name in rows_names(rows)}) > 1:
            console.print(f"[red]warning[/]: the targets answer {check['kind']} differently: {check}")

    stock = rows[0]
    table = Table(
        title=f"/search mix: {args.requests:,} requests per target after {args.warmup} warm-up, "
        f"concurrency {args.concurrency}, {args.rounds} interleaved rounds"
    )
    for col in (
        "target",
        "requests",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "req/s vs stock",
        "p50 vs stock",
        "p95 vs stock",
    ):
        table.add_column(col, justify="left" if col == "target" else "right")
    for row in rows:
        table.add_row(
            row["target"] + (" (truncated)" if row["truncated"] else ""),
            f"{row['requests']:,}",
            f"{row['req_per_s']:.1f}",
            f"{row['p50_ms']:.1f}",
            f"{row['p95_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            str(row["errors"]),
            ratio(row["req_per_s"], stock["req_per_s"]),
            ratio(row["p50_ms"], stock["p50_ms"]),
            ratio(row["p95_ms"], stock["p95_ms"]),
        )
    console.print(table)

    table = Table(title="Latency by request kind: p50 / p95 ms")
    table.add_column("request")
    for name in rows_names(rows):
        table.add_column(name, justify="right")
    for kind in KINDS:
        table.add_row(kind, *[f"{r['by_kind'][kind]['p50_ms']:.1f} / {r['by_kind'][kind]['p95_ms']:.1f}" for r in rows])
    console.print(table)
    for row in rows:
        for example in row["error_examples"]:
            console.print(f"[red]error[/] {row['target']}: {example}")


def rows_names(rows: list[dict]) -> list[str]:
    return [row["target"] for row in rows]


# --------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--items",
        type=int,
        default=10_000,
        help="items to ingest and search: the 1,000 NAIP items, repeated with new ids",
    )
    parser.add_argument("--runs", type=int, default=3, help="timed ingest runs per loader and scenario")
    parser.add_argument("--requests", type=int, default=2_000, help="measured requests per target")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests per target (not measured)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight per target")
    parser.add_argument("--rounds", type=int, default=4, help="the requests are split in rounds, targets rotate")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=120,
        help="time budget per target for its measured requests (truncated beyond)",
    )
    parser.add_argument(
        "--catalog-pool-size",
        type=int,
        default=13,
        help="EOLAKE_CATALOG_POOL_SIZE: reads get size - size//4 (13 -> 10, like stock)",
    )
    parser.add_argument(
        "--accept-encoding",
        default="gzip, deflate, br",
        help="Accept-Encoding the load generator sends (httpx's default here; servers compress)",
    )
    parser.add_argument("--skip-ingest", action="store_true", help="only load the items once, untimed")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) at the end")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args()
    if args.items < 1 or args.requests < 1 or args.concurrency < 1 or args.runs < 1 or args.rounds < 1:
        parser.error("--items, --requests, --concurrency, --runs and --rounds must be at least 1")
    return args


def command_line(args: argparse.Namespace) -> str:
    parts = [
        "python",
        "bench/catalog.py",
        "--items",
        str(args.items),
        "--runs",
        str(args.runs),
        "--requests",
        str(args.requests),
        "--warmup",
        str(args.warmup),
        "--concurrency",
        str(args.concurrency),
        "--rounds",
        str(args.rounds),
        "--catalog-pool-size",
        str(args.catalog_pool_size),
    ]
    if args.skip_ingest:
        parts.append("--skip-ingest")
    if args.json:
        parts += ["--json", str(args.json)]
    return shlex.join(parts)


def interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def begin(script: str, title: str) -> str:
    """A benchmark's start: SIGTERM and SIGINT unwind like Ctrl-C (its finally blocks stop what it started), its
    title, command line, machine and load average printed; returns the command line."""
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    command = shlex.join(["python", f"bench/{script}", *sys.argv[1:]])
    console.rule(title)
    console.print(
        f"command: {command}\nmachine: {os.cpu_count()} cores, {cpu_model()}; load average before: {load_average()}"
    )
    return command


@contextlib.contextmanager
def private_cluster(name: str) -> Iterator[tuple[Path, PostgresCluster, contextlib.ExitStack]]:
    """A work directory under /tmp holding a private cluster, started and migrated, and the exit stack the
    benchmark adds what it starts to: when it ends, they are stopped, then the cluster, then the directory goes."""
    workdir = Path(tempfile.mkdtemp(prefix=f"eolake-bench-{name}-", dir="/tmp"))
    workdir.chmod(0o755)  # as root the cluster runs as the postgres user, who must reach it
    cluster = PostgresCluster(workdir / "pg")
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(lambda: cluster.stop("fast") if cluster.initialized else None)
            cluster.start()
            cluster.migrate()
            yield workdir, cluster, stack
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    args = parse_args()
    # SIGTERM (and SIGINT, even where a shell started us ignoring it) unwind like Ctrl-C, so the finally blocks
    # stop the servers and the cluster.
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    began = time.perf_counter()
    console.rule("eolake catalog benchmark")
    console.print(f"command: {command_line(args)}")
    cores = os.cpu_count()
    load_before = load_average()
    console.print(
        f"machine: {cores} CPU core(s), {cpu_model()}, {platform.platform()}; load average before: {load_before}"
    )
    if cores and cores <= 4:
        console.print(
            f"[yellow]note:[/] only {cores} cores: the load generator (this process), the servers, the "
            "gateway and PostgreSQL all share them, so absolute figures are low and the extra gateway "
            "hop costs CPU the servers would otherwise get. Compare ratios, not absolute numbers."
        )

    workdir = Path(tempfile.mkdtemp(prefix="eolake-bench-", dir="/tmp"))
    workdir.chmod(0o755)  # as root the cluster runs as the postgres user, who must reach it
    cluster = PostgresCluster(workdir / "pg")
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(lambda: cluster.stop("fast") if cluster.initialized else None)
            console.print(f"starting PostgreSQL in {workdir} ...")
            cluster.start()
            cluster.migrate()
            dsn = cluster.dsn()
            info = versions(dsn)
            console.print("versions: " + ", ".join(f"{k} {v}" for k, v in info.items()))

            items_file = workdir / "items.ndjson"
            ids, places = make_items(ITEMS, args.items, items_file)
            copies = math.ceil(args.items / 1000)
            source = (
                "the 1,000 real items"
                if args.items == 1000
                else f"the 1,000 real items repeated {copies}x with ids suffixed -rN"
                if args.items > 1000
                else f"the first {args.items} real items"
            )
            console.print(f"data: {args.items:,} items in {items_file.name}: {source}")
            collection = collection_json()

            output: dict[str, Any] = {
                "command": command_line(args),
                "cores": cores,
                "cpu": cpu_model(),
                "versions": info,
                "load_average_before": load_before,
                "items": args.items,
                "items_source": source,
            }
            if args.skip_ingest:
                reset_collection(dsn, collection)
                load_stock(items_file, dsn)
            else:
                console.rule("ingest")
                ingest = bench_ingest(dsn, items_file, args.items, args.runs, collection)
            # Searches run on the state the last load left: every item present, as both loaders write it.
            sql(dsn, "VACUUM ANALYZE")

            console.rule("search")
            gateway_port = free_port()
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            parts = urlsplit(dsn)
            stock_port = free_port()
            stock = start_server(
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
                    str(stock_port),
                    "--workers",
                    "1",
                ],
                {
                    "PGUSER": unquote(parts.username),
                    "PGPASSWORD": unquote(parts.password),
                    "PGHOST": parts.hostname,
                    "PGPORT": str(parts.port),
                    "PGDATABASE": parts.path.strip("/"),
                },
                stock_port,
                "/",
                workdir,
            )
            catalog_port = free_port()
            catalog = start_server(
                stack,
                "eolake catalog",
                [sys.executable, "-m", "eolake_catalog"],
                {
                    "EOLAKE_CATALOG_DATABASE_URL": dsn,
                    "EOLAKE_CATALOG_PORT": str(catalog_port),
                    "EOLAKE_CATALOG_HOST": "127.0.0.1",
                    "EOLAKE_CATALOG_WORKERS": "1",
                    "EOLAKE_CATALOG_POOL_SIZE": str(args.catalog_pool_size),
                    "EOLAKE_CATALOG_PUBLIC_URL": gateway_url,
                    # Through the gateway every request comes from one client: the per-client rate limit (20/s) would
                    # answer 429 to the benchmark rather than measure the catalog.
                    "EOLAKE_CATALOG_RATE_LIMIT__REQUESTS_PER_SECOND": "100000",
                    "EOLAKE_CATALOG_RATE_LIMIT__BURST": "100000",
                },
                catalog_port,
                "/readyz",
                workdir,
            )
            gateway = start_server(
                stack,
                "eolake gateway",
                [sys.executable, "-m", "eolake.embedded.gateway"],
                {
                    "EOLAKE_GATEWAY_ROUTES": json.dumps({"/stac": catalog.url}),
                    "EOLAKE_GATEWAY_PORT": str(gateway_port),
                    "EOLAKE_GATEWAY_PUBLIC_URL": gateway_url,
                },
                gateway_port,
                "/stac/readyz",
                workdir,
            )
            read_pool = args.catalog_pool_size - max(1, args.catalog_pool_size // 4)
            console.print(
                f"servers: stock {stock.url} (1 worker, read pool max {STOCK_READ_POOL}); catalog "
                f"{catalog.url} (1 worker, pool {args.catalog_pool_size}: {read_pool} read); gateway "
                f"{gateway.url}/stac -> catalog"
            )
            targets = [
                Target("stock stac-fastapi-pgstac", stock.url),
                Target("eolake catalog", catalog.url),
                Target("eolake catalog via gateway", gateway.url + "/stac"),
            ]
            reqs = request_mix(args.requests, ids, places)
            warmup = request_mix(args.warmup, ids, places, seed=7)
            try:
                import uvloop

                run = uvloop.run
            except ImportError:
                run = asyncio.run
            checks, results = run(
                bench_search(
                    targets, reqs, warmup, args.concurrency, args.rounds, args.max_seconds, args.accept_encoding
                )
            )
            for server in (gateway, catalog, stock):
                if server.proc.poll() is not None:
                    console.print(f"[red]{server.name} died during the run[/]: {server.log.read_text()[-2000:]}")

            console.rule("results")
            console.print(f"command: {command_line(args)}")
            if not args.skip_ingest:
                output["ingest"] = print_ingest(ingest, args.items, source)
                console.print(
                    "ingest: wall time of the call, per run; eolake ingest includes reading + STAC "
                    "validation (compiled STAC schema) of every record; pypgstac is PgstacCLI.load "
                    "in-process (the CLI's code, no interpreter start). fresh = collection deleted and "
                    "re-created before each run; reload = all ids already present, identical."
                )
            rows = summarise_search(results)
            print_search(rows, checks, args)
            loop_name = "uvloop" if run is not asyncio.run else "asyncio"
            console.print(
                f"load generator: in-process asyncio httpx ({loop_name}), {args.concurrency} connections "
                "kept alive per target, Accept-Encoding "
                f"'{args.accept_encoding}', bodies read raw (not decompressed); latency measured "
                "client-side, so it includes client scheduling delay on a busy machine."
            )
            if cores and cores <= 4:
                console.print(f"[yellow]note:[/] {cores} cores shared by load generator, servers and PostgreSQL.")
            output["search"] = {
                "targets": rows,
                "sanity": checks,
                "concurrency": args.concurrency,
                "requests": args.requests,
                "warmup": args.warmup,
                "rounds": args.rounds,
                "accept_encoding": args.accept_encoding,
                "catalog_pool_size": args.catalog_pool_size,
                "catalog_read_pool": read_pool,
                "stock_read_pool": STOCK_READ_POOL,
            }
            output["seconds"] = time.perf_counter() - began
            output["load_average_after"] = load_average()
            console.print(
                f"total {output['seconds']:.0f} s; load average after: {output['load_average_after']} "
                "(well above the benchmark's own share means other work on the machine added noise)"
            )
            if args.json:
                args.json.write_text(json.dumps(output, indent=2, default=str))
                console.print(f"figures written to {args.json}")
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]: cleaning up")
        return 130
    finally:
        # Servers and the cluster are stopped by the ExitStack; then the data directory goes.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if args.keep:
            console.print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
