"""The load generator: a fixed request mix replayed against each target at fixed concurrency, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from dataclasses import dataclass, field

import httpx
from rich.console import Console

COLLECTION = "naip"
console = Console()
KINDS = ("GET /search", "POST /search bbox+datetime", "POST /search cql2 filter", "GET item")

@dataclass(frozen=True)
class Req:
    kind: str
    method: str
    path: str
    params: dict | None = None
    body: dict | None = None


def request_mix(count: int, ids: list[str], places: list[tuple[list[float], int]], seed: int = 42) -> list[Req]:
    """`count` requests, the four kinds in equal shares in a shuffled order; deterministic for a seed.

    `places` are (bbox, year) of the real items: bbox+datetime searches are centred on one of them, so they
    always find something (the sample covers Alabama sparsely: a random box would often be empty).
    """
    rng = random.Random(seed)
    kinds = [KINDS[i % len(KINDS)] for i in range(count)]
    rng.shuffle(kinds)
    out = []
    for kind in kinds:
        if kind == "GET /search":
            out.append(Req(kind, "GET", "/search", params={"collections": COLLECTION, "limit": "10"}))
        elif kind == "POST /search bbox+datetime":
            (west, south, east, north), year = rng.choice(places)
            x, y = (west + east) / 2, (south + north) / 2
            out.append(Req(kind, "POST", "/search", body={
                "collections": [COLLECTION],
                "bbox": [round(x - 0.15, 4), round(y - 0.1, 4), round(x + 0.15, 4), round(y + 0.1, 4)],
                "datetime": f"{year - 2}-01-01T00:00:00Z/{year + 2}-12-31T23:59:59Z", "limit": 10}))
        elif kind == "POST /search cql2 filter":
            gsd = rng.choice([0.3, 0.6, 1.0])
            out.append(Req(kind, "POST", "/search", body={
                "collections": [COLLECTION], "limit": 10, "filter-lang": "cql2-json",
                "filter": {"op": "and", "args": [{"op": "=", "args": [{"property": "naip:state"}, "al"]},
                                                 {"op": "=", "args": [{"property": "gsd"}, gsd]}]}}))
        else:
            out.append(Req(kind, "GET", f"/collections/{COLLECTION}/items/{rng.choice(ids)}"))
    return out


@dataclass
class Sample:
    kind: str
    seconds: float
    ok: bool


@dataclass
class TargetResult:
    name: str
    samples: list[Sample] = field(default_factory=list)
    busy_seconds: float = 0.0  # sum of the wall time of its measured rounds
    truncated: bool = False
    error_examples: list[str] = field(default_factory=list)


@dataclass
class Target:
    name: str
    base: str  # URL prefix the request paths are appended to
    client: httpx.AsyncClient | None = None


async def replay(target: Target, reqs: list[Req], concurrency: int, deadline: float,
                 result: TargetResult | None) -> float:
    """Send `reqs` with `concurrency` workers; returns the wall time. Bodies are read raw (not decompressed)."""
    feed = iter(reqs)
    client = target.client

    async def worker() -> None:
        for req in feed:
            if time.monotonic() > deadline:
                if result is not None:
                    result.truncated = True
                return
            started = time.perf_counter()
            ok, problem = False, ""
            try:
                async with client.stream(req.method, target.base + req.path, params=req.params,
                                         json=req.body) as response:
                    async for _ in response.aiter_raw():
                        pass
                ok = response.status_code == 200
                problem = "" if ok else f"{req.kind}: HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{req.kind}: {type(exc).__name__}: {exc}"
            if result is not None:
                result.samples.append(Sample(req.kind, time.perf_counter() - started, ok))
                if problem and len(result.error_examples) < 5:
                    result.error_examples.append(problem)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def sanity(targets: list[Target], reqs: list[Req]) -> list[dict]:
    """One request of each kind on every target: status and number of features, to check they answer alike."""
    rows = []
    for kind in dict.fromkeys(r.kind for r in reqs):  # the kinds of the mix, in order of appearance
        req = next(r for r in reqs if r.kind == kind)
        row = {"kind": kind}
        for target in targets:
            response = await target.client.request(req.method, target.base + req.path, params=req.params,
                                                   json=req.body)
            if response.status_code != 200:
                row[target.name] = f"HTTP {response.status_code}"
                continue
            body = response.json()
            row[target.name] = len(body["features"]) if "features" in body else body.get("id", "?")[:12]
        rows.append(row)
    return rows


async def bench_search(targets: list[Target], reqs: list[Req], warmup: list[Req], concurrency: int, rounds: int,
                       max_seconds: float, accept_encoding: str) -> tuple[list[dict], list[TargetResult]]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    results = {t.name: TargetResult(t.name) for t in targets}
    async with contextlib.AsyncExitStack() as stack:
        for target in targets:
            target.client = await stack.enter_async_context(httpx.AsyncClient(
                limits=limits, timeout=30, headers={"accept-encoding": accept_encoding}))
        checks = await sanity(targets, reqs)
        for target in targets:
            console.print(f"  warm-up {target.name}: {len(warmup)} requests")
            await replay(target, warmup, concurrency, time.monotonic() + max_seconds, None)
        chunk = math.ceil(len(reqs) / rounds)
        budget = {t.name: max_seconds for t in targets}
        for r in range(rounds):
            part = reqs[r * chunk:(r + 1) * chunk]
            order = targets[r % len(targets):] + targets[:r % len(targets)]
            for target in order:
                result = results[target.name]
                if budget[target.name] <= 0:
                    result.truncated = True
                    continue
                seconds = await replay(target, part, concurrency, time.monotonic() + budget[target.name], result)
                budget[target.name] -= seconds
                result.busy_seconds += seconds
                done = len(result.samples)
                console.print(f"  round {r + 1}/{rounds} {target.name:28} {len(part)} requests in {seconds:5.2f} s "
                              f"({len(part) / seconds:6.1f} req/s; {done} so far)")
    return checks, list(results.values())
