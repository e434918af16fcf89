"""Federated search benchmark: parallel federation vs the slowest provider vs EODAG's sequential search, and
thesaurus figures.

A measurement, not a test: nothing is asserted. One private PostgreSQL+PostGIS+pgstac cluster with the NAIP
sample items, one catalog process, and `--providers` delaying proxies in front of it (each adds `--delay` ms,
loopback): every provider answers the same search in about the same time.

- federated: our search service (in-process, uvicorn thread) over the N providers, `--requests` searches;
- slowest single provider: each proxy queried directly, the slowest median;
- EODAG sequential: `EODataAccessGateway` (offline, the N proxies as custom StacSearch providers), one
  `search(provider=p)` after another, as EODAG does over several providers;
- thesaurus: lookup and autocomplete p50/p95 over the bilingual GEMET index (HTTP, in-process server);
- search with vs without expansion (`q=inondation`, depth 1).

Usage: python bench/federation.py [--providers 5] [--delay 200] [--requests 20] [--thesaurus-requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
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
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from eolake_search.app import create_app  # noqa: E402
from eolake_search.providers import offline_gateway  # noqa: E402
from eolake_search.settings import ProviderConfig, SearchSettings  # noqa: E402
from eolake_thesaurus.app import create_app as thesaurus_app  # noqa: E402
from eolake_thesaurus.demo import load_demo_vocabularies  # noqa: E402
from eolake_thesaurus.settings import ThesaurusSettings  # noqa: E402

from eolake.ingest import ingest  # noqa: E402
from eolake.paths import SHARED_DATA  # noqa: E402
from servers import private_cluster, served, service_process  # noqa: E402

HITS: dict[str, int] = {}


def delaying_proxy(upstream: str, delay: float) -> Starlette:
    client = httpx.AsyncClient(timeout=60)

    async def forward(request: Request) -> Response:
        HITS["n"] = HITS.get("n", 0) + 1
        body = await request.body()
        await asyncio.sleep(delay)
        r = await client.request(
            request.method,
            upstream + request.url.path,
            params=request.query_params,
            content=body,
            headers={"content-type": "application/json"},
        )
        return Response(r.content, r.status_code, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--providers", type=int, default=5)
    p.add_argument("--delay", type=float, default=200, help="ms each provider adds")
    p.add_argument("--requests", type=int, default=20, help="searches per target")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--thesaurus-requests", type=int, default=300)
    args = p.parse_args()
    command = "python bench/federation.py " + shlex.join(sys.argv[1:])
    print(f"$ {command}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="eolake-bench-federation-"))
    work.chmod(0o755)
    try:
        with ExitStack() as stack:
            cluster = stack.enter_context(private_cluster("eolake-bench-federation-pg-"))
            ingest(
                [SHARED_DATA / "stac/pc-collections/collections.ndjson", SHARED_DATA / "stac/naip/items.ndjson"],
                cluster.dsn(),
            )
            catalog = stack.enter_context(
                service_process(
                    "eolake_catalog",
                    {"EOLAKE_CATALOG_DATABASE_URL": cluster.app_dsn(), "EOLAKE_CATALOG_ROOT_PATH": ""},
                    work / "catalog.log",
                )
            )
            proxies = [
                stack.enter_context(served(delaying_proxy(catalog, args.delay / 1000))) for _ in range(args.providers)
            ]
            print("building the GEMET + INSPIRE index…", flush=True)
            start = time.perf_counter()
            load_demo_vocabularies(work, SHARED_DATA / "thesauri")
            build_s = time.perf_counter() - start
            thesaurus = stack.enter_context(served(thesaurus_app(ThesaurusSettings(storage_path=work, root_path=""))))
            settings = SearchSettings(
                peers={"catalog": {"url": proxies[0]}, "thesaurus": {"url": thesaurus}},
                local_provider="p0",
                storage_path=work,
                root_path="",
                providers=[
                    ProviderConfig(name=f"p{i}", url=u, timeout_seconds=30, free_text="filter")
                    for i, u in enumerate(proxies[1:], 1)
                ],
            )
            search = stack.enter_context(served(create_app(settings)))
            body = {"collections": ["naip"], "limit": args.limit}
            http = stack.enter_context(httpx.Client(timeout=60))

            for url in [search, *proxies]:  # warm up connections and caches
                http.post(f"{url}/search", json=body).raise_for_status()
            federated = timed(lambda: http.post(f"{search}/search", json=body).raise_for_status(), args.requests)
            singles = {
                u: timed(lambda u=u: http.post(f"{u}/search", json=body).raise_for_status(), args.requests)
                for u in proxies
            }
            slowest = max(statistics.median(v) for v in singles.values())

            async def fan_out():  # the floor: the same five requests in parallel, no merging, no service
                async with httpx.AsyncClient(timeout=60) as client:
                    for r in await asyncio.gather(*(client.post(f"{u}/search", json=body) for u in proxies)):
                        r.raise_for_status()

            floor = timed(lambda: asyncio.run(fan_out()), args.requests)

            # One gateway per provider: a single gateway maps a collection to the first provider that served it
            # ("p1 is not (yet) supported for naip" afterwards), so each provider gets its own, built untimed.
            dags = [offline_gateway(work / f"eodag-{i}", [], {f"p{i}": u}) for i, u in enumerate(proxies)]

            def eodag_sequential():
                for i, dag in enumerate(dags):
                    result = dag.search(provider=f"p{i}", collection="naip", items_per_page=args.limit)
                    assert len(result) == args.limit

            eodag_sequential()
            HITS["n"] = 0
            eodag = timed(eodag_sequential, max(3, args.requests // 4))
            eodag_requests = HITS["n"] / len(eodag) / len(dags)

            # thesaurus: lookups of real labels (both languages) and autocomplete of their prefixes
            def labels(lang: str) -> list[str]:
                found = http.get(
                    f"{thesaurus}/rest/v1/gemet/search",
                    params={"query": "*", "lang": lang, "maxhits": 200, "offset": 1000},
                ).json()
                return [r["prefLabel"] for r in found["results"]]

            rng = random.Random(4)
            words = [w for w in labels("en") + labels("fr") if w]
            lookups = timed(
                lambda: http.get(f"{thesaurus}/rest/v1/gemet/lookup", params={"label": rng.choice(words)}),
                args.thesaurus_requests,
            )
            autos = timed(
                lambda: http.get(f"{thesaurus}/autocomplete", params={"q": rng.choice(words)[:3], "limit": 10}),
                args.thesaurus_requests,
            )
            q = {"q": ["inondation"], "collections": ["naip"], "limit": args.limit}
            with_exp = timed(lambda: http.post(f"{search}/search", json=q).raise_for_status(), args.requests)
            without = timed(
                lambda: http.post(f"{search}/search", json={**q, "expand": False}).raise_for_status(), args.requests
            )
        fm, em = statistics.median(federated), statistics.median(eodag)
        print()
        print(f"$ {command}")
        print(
            f"{args.providers} providers, each = catalog + {args.delay:g} ms proxy delay; limit {args.limit}; "
            f"{args.requests} searches per target (medians, ms)"
        )
        print(f"  federated (ours, parallel)     {fm:8.1f}  p95 {pct(federated, 95):8.1f}")
        print(f"  slowest single provider        {slowest:8.1f}  (alone: the one catalog behind them is idle)")
        print(
            f"  bare parallel fan-out          {statistics.median(floor):8.1f}  (same 5 requests via asyncio.gather, "
            "no service: the floor on this machine)"
        )
        print(
            f"  EODAG sequential over all      {em:8.1f}  ({len(eodag)} runs; {eodag_requests:.1f} HTTP requests "
            "per provider search)"
        )
        print(
            f"  ratios: ours / slowest = {fm / slowest:.2f}   ours / bare fan-out = "
            f"{fm / statistics.median(floor):.2f}   EODAG sequential / ours = {em / fm:.2f}"
        )
        print(f"thesaurus (GEMET en+fr, INSPIRE; index built in {build_s:.1f} s), {args.thesaurus_requests} requests")
        print(f"  lookup        p50 {pct(lookups, 50):6.2f}  p95 {pct(lookups, 95):6.2f} ms")
        print(f"  autocomplete  p50 {pct(autos, 50):6.2f}  p95 {pct(autos, 95):6.2f} ms")
        wm, wo = statistics.median(with_exp), statistics.median(without)
        print(f"search q=inondation: with expansion {wm:.1f} ms, without {wo:.1f} ms (ratio {wm / wo:.2f})")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
