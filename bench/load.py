"""The benchmarks' request mix, replayed against each target at fixed concurrency, on loopback, by eolake's load
generator (acceptance/steady_load.py: `run_closed`)."""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "acceptance"))
from steady_load import Report, Route, percentile, run_closed  # noqa: E402

COLLECTION = "naip"
console = Console()
KINDS = ("GET /search", "POST /search bbox+datetime", "POST /search cql2 filter", "GET item")
__all__ = [
    "COLLECTION",
    "KINDS",
    "Route",
    "Target",
    "TargetResult",
    "bench_search",
    "console",
    "cpu_seconds",
    "percentile",
    "request_mix",
]


def request_mix(count: int, ids: list[str], places: list[tuple[list[float], int]], seed: int = 42) -> list[Route]:
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
            out.append(Route(kind, "GET", "/search", params={"collections": COLLECTION, "limit": "10"}))
        elif kind == "POST /search bbox+datetime":
            (west, south, east, north), year = rng.choice(places)
            x, y = (west + east) / 2, (south + north) / 2
            out.append(
                Route(
                    kind,
                    "POST",
                    "/search",
                    body={
                        "collections": [COLLECTION],
                        "bbox": [round(x - 0.15, 4), round(y - 0.1, 4), round(x + 0.15, 4), round(y + 0.1, 4)],
                        "datetime": f"{year - 2}-01-01T00:00:00Z/{year + 2}-12-31T23:59:59Z",
                        "limit": 10,
                    },
                )
            )
        elif kind == "POST /search cql2 filter":
            out.append(cql2_search(kind, rng.choice([0.3, 0.6, 1.0])))
        else:
            out.append(Route(kind, "GET", f"/collections/{COLLECTION}/items/{rng.choice(ids)}"))
    return out


def cql2_search(kind: str, gsd: float) -> Route:
    """NAIP items of one state at one ground sample distance, as a CQL2-JSON filter."""
    body = {
        "collections": [COLLECTION],
        "limit": 10,
        "filter-lang": "cql2-json",
        "filter": {
            "op": "and",
            "args": [
                {"op": "=", "args": [{"property": "naip:state"}, "al"]},
                {"op": "=", "args": [{"property": "gsd"}, gsd]},
            ],
        },
    }
    return Route(kind, "POST", "/search", body=body)


def cpu_seconds(roots: list[int]) -> float:
    """CPU seconds (user + system) of the processes `roots` and all their descendants alive now, plus what the
    roots' children that exited used (the kernel adds it to the root once reaped)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    total, todo = 0, list(roots)
    while todo:
        pid = todo.pop()
        if fields := stats.get(pid):
            total += int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if pid in roots else 0)
            todo += children.get(pid, [])
    return total / tick


@dataclass
class Target:
    name: str
    base: str  # URL prefix the request paths are appended to
    client: httpx.AsyncClient | None = None
    transport: httpx.AsyncBaseTransport | None = None  # instead of httpx's own pool of `concurrency` connections


@dataclass
class TargetResult:
    """A target's measured requests; a request is ok when it answered 200 (every request of the mix should)."""

    name: str
    report: Report = field(default_factory=lambda: Report("", None, 0.0, time.time()))
    used: dict[str, float] = field(default_factory=dict)  # what the probe counts, while this target ran

    @property
    def samples(self):
        return self.report.samples

    @property
    def busy_seconds(self) -> float:
        return self.report.busy_seconds

    @property
    def truncated(self) -> bool:
        return self.report.truncated

    @property
    def error_examples(self) -> list[str]:
        return [
            f"{s.route}: " + (f"HTTP {s.status}" if s.status else s.error) for s in self.samples if s.status != 200
        ][:5]


async def sanity(targets: list[Target], reqs: list[Route]) -> list[dict]:
    """One request of each kind on every target: status and number of features, to check they answer alike."""
    rows = []
    for kind in dict.fromkeys(r.name for r in reqs):  # the kinds of the mix, in order of appearance
        req = next(r for r in reqs if r.name == kind)
        row = {"kind": kind}
        for target in targets:
            response = await target.client.request(req.method, req.path, params=req.params, json=req.body)
            if response.status_code != 200:
                row[target.name] = f"HTTP {response.status_code}"
                continue
            body = response.json()
            row[target.name] = len(body["features"]) if "features" in body else body.get("id", "?")[:12]
        rows.append(row)
    return rows


async def bench_search(
    targets: list[Target],
    reqs: list[Route],
    warmup: list[Route],
    concurrency: int,
    rounds: int,
    max_seconds: float,
    accept_encoding: str,
    probe: Callable[[str], dict[str, float]] | None = None,
) -> tuple[list[dict], list[TargetResult]]:
    """`probe(target name)`, if given: counters so far of what serves the target (the CPU seconds of its server and
    of the database, the database's blocks…), read before and after each of its measured runs: what the target
    cost, the targets running one at a time."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    results = {t.name: TargetResult(t.name) for t in targets}
    async with contextlib.AsyncExitStack() as stack:
        for target in targets:
            target.client = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=target.base,
                    limits=limits,
                    transport=target.transport,
                    timeout=30,
                    headers={"accept-encoding": accept_encoding},
                )
            )
        checks = await sanity(targets, reqs)
        for target in targets:
            console.print(f"  warm-up {target.name}: {len(warmup)} requests")
            await run_closed(target.client, warmup, concurrency=concurrency, seconds=max_seconds)
        chunk = math.ceil(len(reqs) / rounds)
        for r in range(rounds):
            part = reqs[r * chunk : (r + 1) * chunk]
            order = targets[r % len(targets) :] + targets[: r % len(targets)]
            for target in order:
                report = results[target.name].report
                left = max_seconds - report.busy_seconds
                if left <= 0:
                    report.truncated = True
                    continue
                before, counted = report.busy_seconds, probe(target.name) if probe else {}
                await run_closed(target.client, part, concurrency=concurrency, seconds=left, report=report)
                seconds = report.busy_seconds - before
                used = results[target.name].used
                for name, now in (probe(target.name) if probe else {}).items():
                    used[name] = used.get(name, 0.0) + now - counted[name]
                console.print(
                    f"  round {r + 1}/{rounds} {target.name:28} {len(part)} requests in {seconds:5.2f} s "
                    f"({len(part) / seconds:6.1f} req/s; {len(report.samples)} so far)"
                )
    return checks, list(results.values())
