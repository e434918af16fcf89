"""Read scaling: the unique-query /search mix against eolake's catalog reading from the primary only, and reading
from a streaming replica (writes and a writer's own reads staying on the primary).

A measurement, not a test. One private PostgreSQL cluster, loaded with generated items (bench/generate.py, as
bench/scale.py loads them, eolake's migrations included), then a streaming replica of it (eolake.embedded.replica:
pg_basebackup -R, hot standby, caught up before anything is measured). Two catalog processes with the same settings
(one worker, the same pool size): `primary only` (DATABASE_URL), `with a replica` (the same, plus
READ_DATABASE_URL). The same request sequence (bench/scale.py's mix: nearly every request distinct, so the search
cache rarely answers) is replayed against both, interleaved in rounds, each target first in turn.

Besides requests per second and latency, the CPU seconds each PostgreSQL server spent while each target ran (its
postmaster and every backend, from /proc): where the database work of a read went.

Usage: python bench/replicas.py [--items 10000] [--requests 800] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

import httpx
from catalog import begin, console, load_average, private_cluster, start_server
from load import Target, TargetResult, percentile, run_closed
from rich.table import Table
from scale import create_collections, grow, request_mix

from eolake.embedded.postgres import PostgresCluster, free_port
from eolake.embedded.replica import StreamingReplica

TICKS = os.sysconf("SC_CLK_TCK")
PRIMARY_ONLY, WITH_REPLICA = "primary only", "with a replica"


def server_cpu_seconds(cluster: PostgresCluster) -> float:
    """CPU seconds of a PostgreSQL server: its postmaster, its live children, and the children it has reaped."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split("\n", 1)[0])
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid, ppid = int(stat.parent.name), int(fields[1])
            if pid == postmaster:
                total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
            elif ppid == postmaster:
                total += int(fields[11]) + int(fields[12])
    return total / TICKS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=800, help="measured requests per target")
    parser.add_argument("--warmup", type=int, default=40, help="warm-up requests per target")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pool-size", type=int, default=13, help="each catalog's EOLAKE_CATALOG_POOL_SIZE")
    parser.add_argument("--max-seconds", type=float, default=300, help="budget per target (truncated beyond)")
    parser.add_argument("--json", type=Path)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    command = begin("replicas.py", "eolake read replicas benchmark")
    figures: dict = {"command": command, "load_average_before": load_average(), "items": args.items}
    try:
        with private_cluster("replicas") as (workdir, primary, stack):
            create_collections(primary.dsn(), eolake=True)
            items = grow([primary.dsn()], 0, args.items, workdir)
            replica = StreamingReplica(workdir / "replica", primary)
            stack.callback(lambda: replica.stop("fast") if replica.initialized else None)
            began = time.perf_counter()
            replica.start()
            console.print(f"  streaming replica started and caught up in {time.perf_counter() - began:.1f} s")
            targets = start_catalogs(stack, primary, replica, args.pool_size, workdir)
            figures |= asyncio.run(measure(targets, items, args, {"primary": primary, "replica": replica}))
            figures["load_average_after"] = load_average()
            report(figures)
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2))
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    return 0


def start_catalogs(
    stack: contextlib.ExitStack, primary: PostgresCluster, replica: StreamingReplica, pool_size: int, workdir: Path
) -> list[Target]:
    targets = []
    for name, reads in ((PRIMARY_ONLY, None), (WITH_REPLICA, replica.app_dsn())):
        port = free_port()
        env = {
            "EOLAKE_CATALOG_DATABASE_URL": primary.app_dsn(),
            "EOLAKE_CATALOG_PORT": str(port),
            "EOLAKE_CATALOG_HOST": "127.0.0.1",
            "EOLAKE_CATALOG_WORKERS": "1",
            "EOLAKE_CATALOG_POOL_SIZE": str(pool_size),
            "EOLAKE_CATALOG_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "EOLAKE_CATALOG_ROOT_PATH": "",
            **({"EOLAKE_CATALOG_READ_DATABASE_URL": reads} if reads else {}),
        }
        server = start_server(
            stack, f"eolake catalog {name}", [sys.executable, "-m", "eolake_catalog"], env, port, "/readyz", workdir
        )
        targets.append(Target(name, server.url))
    return targets


async def measure(targets: list[Target], items: list, args: argparse.Namespace, servers: dict) -> dict:
    reqs = request_mix(args.requests, items, seed=args.items)
    warmup = request_mix(args.warmup, items, seed=args.items + 1)
    results = {t.name: TargetResult(t.name) for t in targets}
    cpu = {t.name: dict.fromkeys(servers, 0.0) for t in targets}
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    load_before = load_average()
    async with contextlib.AsyncExitStack() as stack:
        for target in targets:
            target.client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=target.base, limits=limits, timeout=30)
            )
            await replica_in_use(target)
            console.print(f"  warm-up {target.name}: {len(warmup)} requests")
            await run_closed(target.client, warmup, concurrency=args.concurrency, seconds=args.max_seconds)
        chunk = math.ceil(len(reqs) / args.rounds)
        for r in range(args.rounds):
            part = reqs[r * chunk : (r + 1) * chunk]
            for target in targets[r % len(targets) :] + targets[: r % len(targets)]:
                report = results[target.name].report
                left = args.max_seconds - report.busy_seconds
                if left <= 0:
                    report.truncated = True
                    continue
                before = {name: server_cpu_seconds(s) for name, s in servers.items()}
                busy = report.busy_seconds
                await run_closed(target.client, part, concurrency=args.concurrency, seconds=left, report=report)
                for name, s in servers.items():
                    cpu[target.name][name] += server_cpu_seconds(s) - before[name]
                seconds = report.busy_seconds - busy
                console.print(
                    f"  round {r + 1}/{args.rounds} {target.name:16} {len(part)} requests in {seconds:5.2f} s "
                    f"({len(part) / seconds:6.1f} req/s)"
                )
    out: dict = {"load_average_during": [load_before, load_average()], "requests": len(reqs), "targets": {}}
    out["distinct_requests"] = len({json.dumps([q.method, q.path, q.params, q.body], sort_keys=True) for q in reqs})
    for name, result in results.items():
        ok = [s.seconds for s in result.samples if s.status == 200]
        count = len(result.samples)
        out["targets"][name] = {
            "measured": count,
            "errors": count - len(ok),
            "errors_seen": result.error_examples,
            "truncated": result.truncated,
            "req_per_s": count / result.busy_seconds if result.busy_seconds else 0.0,
            "p50_ms": percentile(ok, 50) * 1000,
            "p95_ms": percentile(ok, 95) * 1000,
            "cpu_ms_per_request": {server: seconds * 1000 / max(1, count) for server, seconds in cpu[name].items()},
        }
    return out


async def replica_in_use(target: Target) -> None:
    """The catalog reading from a replica has found it usable before it is measured (its metric says so)."""
    if target.name != WITH_REPLICA:
        return
    deadline = time.monotonic() + 30
    while 'eolake_database_replica_usable{service="catalog"} 1.0' not in (await target.client.get("/metrics")).text:
        if time.monotonic() > deadline:
            raise RuntimeError("the catalog never found its replica usable")
        await asyncio.sleep(0.2)


def report(figures: dict) -> None:
    table = Table(title="unique-query /search mix: primary only vs with a streaming replica (same machine)")
    for col in ("target", "req/s", "p50 ms", "p95 ms", "errors", "primary CPU ms/req", "replica CPU ms/req"):
        table.add_column(col, justify="right")
    rows = figures["targets"]
    for name, row in rows.items():
        table.add_row(
            name + (" (truncated)" if row["truncated"] else ""),
            f"{row['req_per_s']:.1f}",
            f"{row['p50_ms']:.0f}",
            f"{row['p95_ms']:.0f}",
            str(row["errors"]),
            f"{row['cpu_ms_per_request']['primary']:.1f}",
            f"{row['cpu_ms_per_request']['replica']:.1f}",
        )
    console.print(table)
    base, scaled = rows[PRIMARY_ONLY], rows[WITH_REPLICA]
    console.print(
        f"throughput with a replica / primary only: {scaled['req_per_s'] / base['req_per_s']:.2f}x; primary CPU per "
        f"request {scaled['cpu_ms_per_request']['primary']:.1f} ms vs {base['cpu_ms_per_request']['primary']:.1f} ms "
        f"({figures['distinct_requests']} distinct of {figures['requests']} requests, {figures['items']:,} items)"
    )
    for name, row in rows.items():
        for example in row["errors_seen"]:
            console.print(f"[red]error[/] {name}: {example}")
    console.print(
        f"command: {figures['command']}; load average before {figures['load_average_before']}, during "
        f"{figures['load_average_during']}, after {figures['load_average_after']}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
