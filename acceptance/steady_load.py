#!/usr/bin/env python3
"""A steady mix of reads against one base URL, at a fixed rate for a fixed time: per-route latency and errors.

    python acceptance/steady_load.py                                      # the local platform, 20 requests/s for 30 s
    python acceptance/steady_load.py --base-url https://staging.example.org --rate 50 --duration 600 --json load.json
    python acceptance/steady_load.py --user-key-file ~/.eolake-user.key   # the downloads' order list too

The load is open: request i starts at i/rate seconds whatever the earlier ones do (a slow platform does not slow
the load down and hide its latency), with at most --max-in-flight requests open at once. Each request's answer is
kept (start, route, status, seconds): the drills (tests/test_operations.py) read them to tell when and how requests
failed. Failed = a transport error or a status of 500 or more. Exit code: 1 when the error rate is over
--max-error-rate, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
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
    path: str
    body: dict | None = None


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
    rate: float
    duration: float
    started_at: float  # time.time() when the load began
    samples: list[Sample] = field(default_factory=list)
    late: int = 0  # requests that waited for a free slot (--max-in-flight): the platform fell behind

    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.failed]

    def summary(self) -> dict:
        routes = {}
        for name in sorted({s.route for s in self.samples}):
            mine = [s for s in self.samples if s.route == name]
            routes[name] = {"requests": len(mine), "failed": sum(s.failed for s in mine),
                            "statuses": _count(str(s.status) for s in mine), **_percentiles(mine)}
        failed = len(self.failures())
        return {"base_url": self.base_url, "rate": self.rate, "duration": self.duration,
                "requests": len(self.samples), "failed": failed, "late": self.late,
                "error_rate": failed / len(self.samples) if self.samples else 0.0, "routes": routes}


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return dict(sorted(out.items()))


def _percentiles(samples: list[Sample]) -> dict[str, float]:
    times = sorted(s.seconds * 1000 for s in samples)
    if len(times) < 2:
        return {"p50_ms": round(times[0], 1) if times else 0.0, "p95_ms": 0.0, "p99_ms": 0.0}
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49], 1), "p95_ms": round(cuts[94], 1), "p99_ms": round(cuts[98], 1)}


def discover_routes(client: httpx.Client, user_key: str = "") -> list[Route]:
    """The read mix, from what the platform serves: the catalog (collections, GET and POST search, an item), the
    federated search, a tile service TileJSON of a demo item when the demo data is there, the user's orders."""
    services = client.get("/").raise_for_status().json().get("services", {})
    routes: list[Route] = []
    if "/stac" in services:
        found = client.get("/stac/search", params={"limit": 20}).raise_for_status().json()["features"]
        collection = found[0]["collection"] if found else None
        routes.append(Route("GET /stac/collections", "GET", "/stac/collections"))
        if collection:
            item = found[0]["id"]
            routes += [Route("GET /stac/search", "GET", f"/stac/search?collections={collection}&limit=10"),
                       Route("POST /stac/search", "POST", "/stac/search", {"collections": [collection], "limit": 10}),
                       Route("GET /stac item", "GET", f"/stac/collections/{collection}/items/{item}")]
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


async def run_load(base_url: str, routes: list[Route], *, rate: float, duration: float, timeout: float = 30.0,
                   max_in_flight: int = 64, headers: dict[str, str] | None = None,
                   stop: asyncio.Event | None = None) -> Report:
    """`rate` requests a second for `duration` seconds (or until `stop` is set), the routes in turn."""
    report = Report(base_url, rate, duration, time.time())
    slots = asyncio.Semaphore(max_in_flight)
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits, headers=headers) as client:
        began, tasks, total = time.monotonic(), [], int(rate * duration)
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


async def _one(client: httpx.AsyncClient, route: Route, began: float, report: Report,
               slots: asyncio.Semaphore) -> None:
    start = time.monotonic()
    try:
        answer = await client.request(route.method, route.path, json=route.body)
        sample = Sample(start - began, route.name, answer.status_code, time.monotonic() - start,
                        answer.text[:200] if answer.status_code >= 500 else "")
    except httpx.HTTPError as exc:
        sample = Sample(start - began, route.name, 0, time.monotonic() - start, f"{type(exc).__name__}: {exc}"[:200])
    finally:
        slots.release()
    report.samples.append(sample)


def print_summary(summary: dict) -> None:
    print(f"{summary['requests']} requests to {summary['base_url']} at {summary['rate']:g}/s for "
          f"{summary['duration']:g} s: {summary['failed']} failed ({summary['error_rate']:.3%}), "
          f"{summary['late']} late")
    print(f"{'route':<26}{'requests':>9}{'failed':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  statuses")
    for name, r in summary["routes"].items():
        print(f"{name:<26}{r['requests']:>9}{r['failed']:>8}{r['p50_ms']:>9}{r['p95_ms']:>9}{r['p99_ms']:>9}  "
              f"{json.dumps(r['statuses'])}")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default=DEFAULT_BASE_URL)
    p.add_argument("--rate", type=_positive, default=20.0, help="requests a second (default 20)")
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
    report = asyncio.run(run_load(base, routes, rate=args.rate, duration=args.duration, timeout=args.timeout,
                                  max_in_flight=args.max_in_flight, headers=headers))
    summary = report.summary()
    print_summary(summary)
    if args.json:
        args.json.write_text(json.dumps({**summary, "samples": [asdict(s) for s in report.samples]}))
    return 1 if summary["error_rate"] > args.max_error_rate else 0


if __name__ == "__main__":
    sys.exit(main())
