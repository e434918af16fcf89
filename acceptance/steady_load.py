#!/usr/bin/env python3
"""eolake's load generator: a mix of reads against one base URL, at a fixed rate (or a fixed concurrency) for a
fixed time: per-route latency and errors.

    python acceptance/steady_load.py                                      # the local platform, 20 requests/s for 30 s
    python acceptance/steady_load.py --base-url https://staging.example.org --rate 50 --duration 600 --json load.json
    python acceptance/steady_load.py --user-key-file ~/.eolake-user.key   # the downloads' order list too
    python acceptance/steady_load.py --concurrency 8 --duration 60        # as fast as 8 connections go

At a fixed rate the load is open: request i starts at i/rate seconds whatever the earlier ones do (a slow platform
does not slow the load down and hide its latency), with at most --max-in-flight requests open at once. At a fixed
concurrency (`run_closed`, what the benchmarks in bench/ measure throughput with) each connection sends its next
request when the last one is answered. Each request's answer is kept (start, route, status, seconds): the drills
(tests/test_operations.py) and the soak (acceptance/soak.py) read them to tell when and how requests failed. Failed
= a transport error or a status of 500 or more. Bodies are read raw (not decompressed): the client's own work is not
measured. Exit code: 1 when the error rate is over --max-error-rate, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import DEFAULT_BASE_URL, is_local, local_key, read_key  # noqa: E402

TILE_COLLECTION, TILE_ITEM = "garonne-wse", "garonne-wse-2023-01-01"  # the demo rasters


class Route(NamedTuple):
    name: str
    method: str
    path: str  # below the client's base URL
    body: dict | None = None
    params: dict | None = None


@dataclass
class Sample:
    start: float  # seconds since the load began
    route: str
    status: int  # 0: no HTTP answer (connection refused or dropped, timeout)
    seconds: float
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500


@dataclass
class Report:
    base_url: str
    rate: float | None  # requests a second; None at a fixed concurrency
    duration: float
    started_at: float  # time.time() when the load began
    samples: list[Sample] = field(default_factory=list)
    late: int = 0  # requests that waited for a free slot (--max-in-flight): the platform fell behind
    concurrency: int | None = None  # at a fixed concurrency, the connections
    busy_seconds: float = 0.0  # at a fixed concurrency, the wall time the requests took
    truncated: bool = False  # at a fixed concurrency, requests left unsent at the deadline

    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.failed]

    def summary(self) -> dict:
        routes = {}
        for name in sorted({s.route for s in self.samples}):
            mine = [s for s in self.samples if s.route == name]
            routes[name] = {
                "requests": len(mine),
                "failed": sum(s.failed for s in mine),
                "statuses": _count(str(s.status) for s in mine),
                **_percentiles(mine),
            }
        failed = len(self.failures())
        return {
            "base_url": self.base_url,
            "rate": self.rate,
            "concurrency": self.concurrency,
            "duration": self.duration,
            "requests": len(self.samples),
            "failed": failed,
            "late": self.late,
            "error_rate": failed / len(self.samples) if self.samples else 0.0,
            "routes": routes,
        }


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return dict(sorted(out.items()))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, interpolated between the two nearest ranks; NaN for no value."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _percentiles(samples: list[Sample]) -> dict[str, float]:
    times = [s.seconds * 1000 for s in samples]
    return {f"p{q}_ms": round(percentile(times, q), 1) if times else 0.0 for q in (50, 95, 99)}


def discover_routes(client: httpx.Client, user_key: str = "") -> list[Route]:
    """The read mix, from what the platform serves: the catalog (collections, GET and POST search, an item), the
    federated search, a tile service TileJSON of a demo item when the demo data is there, the user's orders."""
    services = {
        prefix
        for prefix in ("/stac", "/search", "/tiles", "/downloads")
        if client.get(f"{prefix}/healthz").status_code == 200
    }  # "/" may be the web view's page
    routes: list[Route] = []
    if "/stac" in services:
        found = client.get("/stac/search", params={"limit": 20}).raise_for_status().json()["features"]
        collection = found[0]["collection"] if found else None
        routes.append(Route("GET /stac/collections", "GET", "/stac/collections"))
        if collection:
            item = found[0]["id"]
            routes += [
                Route("GET /stac/search", "GET", f"/stac/search?collections={collection}&limit=10"),
                Route("POST /stac/search", "POST", "/stac/search", {"collections": [collection], "limit": 10}),
                Route("GET /stac item", "GET", f"/stac/collections/{collection}/items/{item}"),
            ]
    if "/search" in services:
        routes.append(Route("GET /search/search", "GET", "/search/search?q=water&limit=10"))
    if "/tiles" in services:
        tilejson = f"/tiles/collections/{TILE_COLLECTION}/items/{TILE_ITEM}/WebMercatorQuad/tilejson.json?assets=wse"
        if client.get(tilejson).status_code == 200:
            routes.append(Route("GET /tiles tilejson", "GET", tilejson))
    if "/downloads" in services and user_key:
        routes.append(Route("GET /downloads/orders", "GET", "/downloads/orders"))
    if not routes:
        raise SystemExit(f"nothing to load at {client.base_url}: no catalog, search, tiles or downloads")
    return routes


async def run_load(
    base_url: str,
    routes: list[Route],
    *,
    rate: float,
    duration: float,
    timeout: float = 30.0,
    max_in_flight: int = 64,
    headers: dict[str, str] | None = None,
    stop: asyncio.Event | None = None,
) -> Report:
    """`rate` requests a second for `duration` seconds (or until `stop` is set), the routes in turn."""
    report = Report(base_url, rate, duration, time.time())
    slots = asyncio.Semaphore(max_in_flight)
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits, headers=headers) as client:
        began, tasks, total = time.monotonic(), [], int(rate * duration)
        report.started_at = time.time()  # the same instant: a sample's wall-clock time is started_at + its start
        for i in range(total):
            wait = began + i / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if stop is not None and stop.is_set():
                break
            if slots.locked():
                report.late += 1
            await slots.acquire()
            tasks.append(asyncio.create_task(_one(client, routes[i % len(routes)], began, report, slots)))
        await asyncio.gather(*tasks)
    report.samples.sort(key=lambda s: s.start)
    return report


async def run_closed(
    client: httpx.AsyncClient,
    routes: Iterable[Route],
    *,
    concurrency: int,
    seconds: float,
    report: Report | None = None,
) -> Report:
    """Every route of `routes` once, in order, over `concurrency` connections of `client` (each sends its next
    request once the last is answered), for at most `seconds`; the samples go to `report` (a new one by default),
    which also counts the wall time (busy_seconds) and whether requests were left unsent (truncated)."""
    report = report or Report(str(client.base_url), None, seconds, time.time(), concurrency=concurrency)
    feed, began = iter(routes), time.monotonic()
    deadline = began + seconds

    async def connection() -> None:
        for route in feed:
            if time.monotonic() > deadline:
                report.truncated = True
                return
            await _one(client, route, began, report)

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    report.busy_seconds += time.monotonic() - began
    return report


async def _one(
    client: httpx.AsyncClient, route: Route, began: float, report: Report, slots: asyncio.Semaphore | None = None
) -> None:
    start = time.monotonic()
    try:
        async with client.stream(route.method, route.path, params=route.params, json=route.body) as answer:
            body = b"".join([chunk async for chunk in answer.aiter_raw()])
        error = body[:200].decode("utf-8", "replace") if answer.status_code >= 400 else ""
        sample = Sample(start - began, route.name, answer.status_code, time.monotonic() - start, error)
    except httpx.HTTPError as exc:
        sample = Sample(start - began, route.name, 0, time.monotonic() - start, f"{type(exc).__name__}: {exc}"[:200])
    finally:
        if slots is not None:
            slots.release()
    report.samples.append(sample)


async def _run(base: str, routes: list[Route], args: argparse.Namespace, headers: dict[str, str]) -> Report:
    if not args.concurrency:
        return await run_load(
            base,
            routes,
            rate=args.rate,
            duration=args.duration,
            timeout=args.timeout,
            max_in_flight=args.max_in_flight,
            headers=headers,
        )
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=args.timeout, limits=limits, headers=headers) as client:
        endless = itertools.islice(itertools.cycle(routes), 10**9)  # until --duration ends it
        return await run_closed(client, endless, concurrency=args.concurrency, seconds=args.duration)


def print_summary(summary: dict) -> None:
    pace = f"{summary['rate']:g}/s" if summary["rate"] else f"concurrency {summary['concurrency']}"
    print(
        f"{summary['requests']} requests to {summary['base_url']} at {pace} for "
        f"{summary['duration']:g} s: {summary['failed']} failed ({summary['error_rate']:.3%}), "
        f"{summary['late']} late"
    )
    print(f"{'route':<26}{'requests':>9}{'failed':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  statuses")
    for name, r in summary["routes"].items():
        print(
            f"{name:<26}{r['requests']:>9}{r['failed']:>8}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['p99_ms']:>9}  "
            f"{json.dumps(r['statuses'])}"
        )


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _count_of_connections(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1024:
        raise argparse.ArgumentTypeError(f"a number of connections from 1 to 1024, not {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default=DEFAULT_BASE_URL)
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=_positive, default=20.0, help="requests a second (default 20)")
    pace.add_argument(
        "--concurrency",
        type=_count_of_connections,
        help="instead of a rate: this many connections, each sending as soon as it is answered",
    )
    p.add_argument("--duration", type=_positive, default=30.0, help="seconds (default 30)")
    p.add_argument("--timeout", type=_positive, default=30.0, help="longest wait for one answer (default 30 s)")
    p.add_argument("--max-in-flight", type=int, default=64)
    p.add_argument("--user-key-file", type=Path, help="a user's API key: the downloads' order list joins the mix")
    p.add_argument("--max-error-rate", type=float, default=0.001, help="exit 1 above it (default 0.001)")
    p.add_argument("--json", type=Path, help="also write the summary and every sample there")
    args = p.parse_args(argv)
    base = args.base_url.rstrip("/")
    key = read_key(args.user_key_file) or (local_key("user", base) if is_local(base) else "")
    headers = {"X-API-Key": key} if key else {}
    try:
        with httpx.Client(base_url=base, timeout=args.timeout, headers=headers) as client:
            routes = discover_routes(client, key)
    except httpx.HTTPError as exc:
        print(f"load: {base} does not answer as an eolake platform: {exc}", file=sys.stderr)
        return 2
    report = asyncio.run(_run(base, routes, args, headers))
    summary = report.summary()
    print_summary(summary)
    if args.json:
        args.json.write_text(json.dumps({**summary, "samples": [asdict(s) for s in report.samples]}))
    return 1 if summary["error_rate"] > args.max_error_rate else 0


if __name__ == "__main__":
    sys.exit(main())
