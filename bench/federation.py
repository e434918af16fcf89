"""Federated search benchmark: eolake's federated search vs its slowest provider alone, vs a bare parallel fan-out,
vs EODAG's sequential search; thesaurus figures.

A measurement, not a test: nothing is asserted. Every provider is a process of its own with no database
(tests/stub_stac.py: a STAC API over the real NAIP sample items, each search answered after a log-normal delay
drawn from the query, so a query waits the same whoever asks): p0..p(N-2) hold a share of the items each, the last,
deliberately slow, holds them all (every item is on two providers: the merge deduplicates). The search service
runs as its own process too (`python -m eolake_search`), so the ratio federated / slowest provider, same client,
same queries, is eolake's own overhead: fan-out, merge, dedup, token, links, serialisation.

Targets, interleaved round by round by bench/load.py (same request mix, fixed concurrency, keep-alive):
- eolake federated: the search service over the N providers;
- slowest provider: the slow provider queried directly;
- bare fan-out: each request sent to the N providers at once by httpx (keep-alive pools), the slow one's answer
  returned: no service, no merge — the floor on this machine;
then EODAG's sequential `search(provider=p)` over the N providers, and (unless --thesaurus-requests 0) thesaurus
lookup/autocomplete p50/p95 and `q=inondation` with and without expansion through the service.

Usage: python bench/federation.py [--medians-ms 100,120,140,160,300] [--spread 0.15] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
from eolake_search.providers import offline_gateway  # noqa: E402
from eolake_thesaurus.app import create_app as thesaurus_app  # noqa: E402
from eolake_thesaurus.demo import load_demo_vocabularies  # noqa: E402
from eolake_thesaurus.settings import ThesaurusSettings  # noqa: E402
from load import (  # noqa: E402
    Route,
    Target,
    TargetResult,
    bench_search,
    console,
    cql2_search,
    percentile,
    request_mix,
)

from eolake.paths import SHARED_DATA  # noqa: E402
from servers import served, service_process, stub_stac  # noqa: E402

ITEMS = SHARED_DATA / "stac/naip/items.ndjson"


class FanOut(httpx.AsyncBaseTransport):
    """Each request sent to every provider at once over keep-alive pools; the answer of the last (the slow one,
    which holds every item) returned as it is: what a bare parallel client costs, without a service."""

    def __init__(self, providers: list[str], limits: httpx.Limits):
        self.origins = [httpx.URL(u) for u in providers]
        self.inner = httpx.AsyncHTTPTransport(limits=limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()

        async def one(origin: httpx.URL) -> httpx.Response:
            url = request.url.copy_with(scheme=origin.scheme, host=origin.host, port=origin.port)
            response = await self.inner.handle_async_request(
                httpx.Request(request.method, url, headers=request.headers, content=body)
            )
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, stream=httpx.ByteStream(content))

        return (await asyncio.gather(*(one(o) for o in self.origins)))[-1]

    async def aclose(self) -> None:
        await self.inner.aclose()


def provider_files(work: Path, providers: int) -> list[Path]:
    """p0..p(n-2) each hold every (n-1)th item; the last holds them all."""
    lines = [line for line in ITEMS.read_bytes().splitlines() if line.strip()]
    files = []
    for i in range(providers - 1):
        files.append(work / f"p{i}.ndjson")
        files[-1].write_bytes(b"\n".join(lines[i :: providers - 1]) + b"\n")
    files.append(work / f"p{providers - 1}.ndjson")
    files[-1].write_bytes(b"\n".join(lines) + b"\n")
    return files


def mix(count: int, seed: int) -> list:
    items = [orjson.loads(line) for line in ITEMS.read_bytes().splitlines() if line.strip()]
    places = [(i["bbox"], int(i["properties"]["datetime"][:4])) for i in items]
    return request_mix(count, [i["id"] for i in items], places, seed)


def unique_filters(count: int) -> list[Route]:
    """CQL2 searches whose filter was never seen before (the mix's filters repeat: their schema check is
    remembered)."""
    return [cql2_search("POST /search unique cql2 filter", round(0.6 + n / 1e6, 6)) for n in range(1, count + 1)]


def search_env(urls: list[str], thesaurus: str, work: Path, timeout: float) -> dict[str, str]:
    providers = [
        {"name": f"p{i}", "url": u, "timeout_seconds": timeout, "free_text": "q"} for i, u in enumerate(urls[1:], 1)
    ]
    return {
        "EOLAKE_SEARCH_PEERS": json.dumps({"catalog": {"url": urls[0]}, "thesaurus": {"url": thesaurus}}),
        "EOLAKE_SEARCH_LOCAL_PROVIDER": "p0",
        "EOLAKE_SEARCH_LOCAL_TIMEOUT_SECONDS": str(timeout),
        "EOLAKE_SEARCH_PROVIDERS": json.dumps(providers),
        "EOLAKE_SEARCH_STORAGE_PATH": str(work),
        "EOLAKE_SEARCH_ROOT_PATH": "",
        "EOLAKE_SEARCH_LOG_LEVEL": "warning",
    }


def latencies(result: TargetResult) -> list[float]:
    return [s.seconds * 1000 for s in result.samples if s.status == 200]


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--medians-ms", default="100,120,140,160,300", help="each provider's median delay; last: slow")
    p.add_argument("--spread", type=float, default=0.15, help="sigma of the log-normal delays")
    p.add_argument("--requests", type=int, default=300, help="measured requests per target")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--rounds", type=int, default=8, help="the targets take turns this many times")
    p.add_argument("--max-seconds", type=float, default=180, help="time budget per target")
    p.add_argument("--unique-filters", type=int, default=20, help="searches with a never-seen CQL2 filter (0: skip)")
    p.add_argument("--eodag-runs", type=int, default=5, help="EODAG sequential searches (0: skip)")
    p.add_argument("--thesaurus-requests", type=int, default=300, help="0: skip the thesaurus figures")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = p.parse_args()
    medians = [float(m) for m in args.medians_ms.split(",")]
    command = ".venv/bin/python bench/federation.py " + shlex.join(sys.argv[1:])
    console.print(f"$ {command}")
    work = Path(tempfile.mkdtemp(prefix="eolake-bench-federation-"))
    work.chmod(0o755)
    load_before = os.getloadavg()
    try:
        with ExitStack() as stack:
            files = provider_files(work, len(medians))
            urls = [
                stack.enter_context(stub_stac(f, work / f"p{i}.log", m, args.spread, seed=i))
                for i, (f, m) in enumerate(zip(files, medians, strict=True))
            ]
            thesaurus = urls[0]  # no thesaurus: a free-text query is then searched unexpanded
            if args.thesaurus_requests:
                console.print("building the GEMET + INSPIRE index…")
                start = time.perf_counter()
                load_demo_vocabularies(work, SHARED_DATA / "thesauri")
                build_s = time.perf_counter() - start
                thesaurus = stack.enter_context(
                    served(thesaurus_app(ThesaurusSettings(storage_path=work, root_path="")))
                )
            timeout = max(medians) * 10 / 1000 + 5
            search = stack.enter_context(
                service_process("eolake_search", search_env(urls, thesaurus, work, timeout), work / "search.log")
            )
            pool = args.concurrency * len(urls)  # a connection per provider for each request in flight
            limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
            targets = [
                Target("eolake federated", search),
                Target("slowest provider alone", urls[-1]),
                Target("bare parallel fan-out", urls[-1], transport=FanOut(urls, limits)),
            ]
            checks, results = asyncio.run(
                bench_search(
                    targets,
                    mix(args.requests, 42),
                    mix(args.warmup, 7),
                    args.concurrency,
                    args.rounds,
                    args.max_seconds,
                    "identity",
                )
            )
            unique = unique_filter_figures(targets[:2], args) if args.unique_filters else []
            eodag = eodag_sequential(work, urls, args.eodag_runs)
            thesaurus_lines = thesaurus_figures(search, thesaurus, args, build_s) if args.thesaurus_requests else []
        load_after = os.getloadavg()
        report(command, args, medians, checks, results, eodag, thesaurus_lines, load_before, load_after)
        report_unique(unique)
        return 0
    finally:
        if args.keep:
            console.print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def eodag_sequential(work: Path, urls: list[str], runs: int) -> list[float]:
    """EODAG's way over several providers: one `search(provider=p)` after another. One gateway per provider (a
    gateway maps a collection to the first provider that served it), built untimed."""
    if not runs:
        return []
    dags = [offline_gateway(work / f"eodag-{i}", [], {f"p{i}": u}) for i, u in enumerate(urls)]

    def sequential():
        for i, dag in enumerate(dags):
            assert len(dag.search(provider=f"p{i}", collection="naip", limit=10)) > 0

    sequential()
    return timed(sequential, runs)


def thesaurus_figures(search: str, thesaurus: str, args: argparse.Namespace, build_s: float) -> list[str]:
    """Lookups of real labels (both languages), autocomplete of their prefixes, and a free-text search with and
    without expansion through the service."""
    with httpx.Client(timeout=60) as http:

        def labels(lang: str) -> list[str]:
            found = http.get(
                f"{thesaurus}/rest/v1/gemet/search",
                params={"query": "*", "lang": lang, "maxhits": 200, "offset": 1000},
            ).json()
            return [r["prefLabel"] for r in found["results"]]

        rng = random.Random(4)
        words = [w for w in labels("en") + labels("fr") if w]
        n = args.thesaurus_requests
        lookups = timed(lambda: http.get(f"{thesaurus}/rest/v1/gemet/lookup", params={"label": rng.choice(words)}), n)
        autos = timed(
            lambda: http.get(f"{thesaurus}/autocomplete", params={"q": rng.choice(words)[:3], "limit": 10}), n
        )
        q = {"q": ["inondation"], "collections": ["naip"], "limit": 10}
        runs = max(5, args.requests // 20)
        with_exp = timed(lambda: http.post(f"{search}/search", json=q).raise_for_status(), runs)
        without = timed(lambda: http.post(f"{search}/search", json={**q, "expand": False}).raise_for_status(), runs)
    wm, wo = statistics.median(with_exp), statistics.median(without)
    return [
        f"thesaurus (GEMET en+fr, INSPIRE; index built in {build_s:.1f} s), {n} requests",
        f"  lookup        p50 {percentile(lookups, 50):6.2f}  p95 {percentile(lookups, 95):6.2f} ms",
        f"  autocomplete  p50 {percentile(autos, 50):6.2f}  p95 {percentile(autos, 95):6.2f} ms",
        f"search q=inondation ({runs} each): with expansion {wm:.1f} ms, without {wo:.1f} ms (ratio {wm / wo:.2f})",
    ]


def report(command, args, medians, checks, results, eodag, thesaurus_lines, load_before, load_after) -> None:
    print()
    print(f"$ {command}")
    names = ", ".join(f"p{i} {m:g}" for i, m in enumerate(medians))
    print(
        f"{len(medians)} stub providers, own processes, no database; median delays ms: {names} (log-normal, sigma "
        f"{args.spread:g}); p{len(medians) - 1} holds every item; {args.requests} requests per target, "
        f"concurrency {args.concurrency}, {args.rounds} rounds interleaved"
    )
    print(
        f"load average before {' '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{' '.join(f'{x:.2f}' for x in load_after)} (2 cores, shared)"
    )
    print(
        "sanity (features or item id per kind): "
        + "; ".join(f"{c['kind']}: " + ", ".join(str(v) for k, v in c.items() if k != "kind") for c in checks)
    )
    figures = {r.name: latencies(r) for r in results}
    for r in results:
        ms = figures[r.name]
        errors = len(r.samples) - len(ms)
        print(
            f"  {r.name:24} p50 {percentile(ms, 50):7.1f}  p95 {percentile(ms, 95):7.1f}  ms  "
            f"({len(ms)} ok, {errors} errors{', truncated' if r.truncated else ''})"
        )
        for example in r.error_examples:
            print(f"      {example}")
    ours, slow, floor = (figures[t] for t in ("eolake federated", "slowest provider alone", "bare parallel fan-out"))
    for q in (50, 95):
        print(
            f"  p{q}: eolake / slowest provider = {percentile(ours, q) / percentile(slow, q):.3f}   "
            f"bare fan-out / slowest = {percentile(floor, q) / percentile(slow, q):.3f}   "
            f"eolake / bare fan-out = {percentile(ours, q) / percentile(floor, q):.3f}"
        )
    by_kind(results)
    if eodag:
        print(
            f"  EODAG sequential over all {len(medians)} (collections=naip, 10 items each): median "
            f"{statistics.median(eodag):.1f} ms over {len(eodag)} runs"
        )
    for line in thesaurus_lines:
        print(line)


def unique_filter_figures(targets: list[Target], args: argparse.Namespace) -> list[TargetResult]:
    reqs = unique_filters(args.unique_filters)
    return asyncio.run(bench_search(targets, reqs, [], 1, 2, args.max_seconds, "identity"))[1]


def by_kind(results: list[TargetResult]) -> None:
    """eolake over the slowest provider alone, p50 and p95, for each kind of request of the mix."""
    ours, slow = results[0], results[1]
    for kind in dict.fromkeys(s.route for s in ours.samples):
        a = [s.seconds * 1000 for s in ours.samples if s.route == kind and s.status == 200]
        b = [s.seconds * 1000 for s in slow.samples if s.route == kind and s.status == 200]
        print(
            f"    {kind:28} eolake / slowest: p50 {percentile(a, 50) / percentile(b, 50):.3f}  "
            f"p95 {percentile(a, 95) / percentile(b, 95):.3f}  ({len(a)} requests)"
        )


def report_unique(results: list[TargetResult]) -> None:
    if not results or not results[0].samples:
        return
    ours, slow = (latencies(r) for r in results)
    print(
        f"  unique CQL2 filters ({len(ours)} each, concurrency 1): eolake p50 {percentile(ours, 50):.1f} ms, slowest "
        f"provider p50 {percentile(slow, 50):.1f} ms: {percentile(ours, 50) / percentile(slow, 50):.3f}"
    )


if __name__ == "__main__":
    sys.exit(main())
