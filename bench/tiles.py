"""Tile benchmark: our tile service vs rio-tiler in-process (the limit) vs stock titiler-pgstac, same COG.

A measurement, not a test: it never asserts timings. One run, one private PostgreSQL+PostGIS+pgstac cluster,
the demo hydrology data (generated, ingested), and the same list of distinct web-mercator tiles over one demo
COG (`wse`, rescale 125..150, viridis, PNG) for every target:

- rio-tiler in-process: `Reader(cog).tile(x, y, z)` + rescale + colormap + PNG encode, threads = concurrency
  (no HTTP, no database: what rendering alone costs);
- stock titiler-pgstac: `uvicorn titiler.pgstac.main:app`, 1 worker, default settings, DATABASE_URL = app role;
- eolake tiles: `python -m eolake_tiles`, 1 worker (allow-list, guards, kit, ETag, render cache).

Every tile is requested once per target (distinct tiles in every round: no render cache helps), with
`--concurrency` in flight, the targets' order rotating over `--rounds`. Then first (cold) vs repeated tile:
a tile never asked before, then the same URL again (our render cache; stock renders again), then with
If-None-Match (our 304).

Usage: python bench/tiles.py [--tiles N] [--concurrency C] [--rounds R] [--repeats N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import morecantile
from load import cpu_seconds

from eolake.demo import generate_hydrology
from eolake.embedded import processes
from eolake.embedded.postgres import PostgresCluster, free_port
from eolake.ingest import ingest

ITEM = "garonne-wse-2023-01-01"
QUERY = "assets=wse&rescale=125,150&colormap_name=viridis"
BOUNDS = (1.30, 43.50, 1.50, 43.70)


def tiles_over(n: int) -> list[tuple[int, int, int]]:
    tms = morecantile.tms.get("WebMercatorQuad")
    out: list[tuple[int, int, int]] = []
    for z in (12, 13, 14, 15, 16):
        out += [(t.z, t.x, t.y) for t in tms.tiles(*BOUNDS, zooms=[z])]
        if len(out) >= n:
            break
    return out[:n]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


@contextmanager
def process(args: list[str], env: dict, log: Path, url: str, probe: str, pids: dict[str, int]):
    """The server, its pid kept in `pids` under its URL (for its CPU time)."""
    with processes.serving(args, url, log, probe, {**os.environ, **env}) as proc:
        pids[url] = proc.pid
        yield url


async def http_run(base: str, tiles, concurrency: int, max_seconds: float) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    queue = list(tiles)
    started = time.perf_counter()

    async def worker(client: httpx.AsyncClient):
        nonlocal errors
        while queue and time.perf_counter() - started < max_seconds:
            z, x, y = queue.pop()
            t0 = time.perf_counter()
            try:
                r = await client.get(
                    f"{base}/collections/garonne-wse/items/{ITEM}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?{QUERY}"
                )
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


def direct_run(cog: str, tiles, concurrency: int) -> tuple[list[float], int, float]:
    from rio_tiler.colormap import cmap
    from rio_tiler.io import Reader

    colormap = cmap.get("viridis")

    def one(tile) -> float:
        z, x, y = tile
        t0 = time.perf_counter()
        with Reader(cog) as src:
            img = src.tile(x, y, z)
        img.rescale(((125, 150),))
        img.render(img_format="PNG", colormap=colormap)
        return time.perf_counter() - t0

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, tiles))
    return latencies, 0, time.perf_counter() - started


def cold_vs_repeated(base: str, repeats: int, tag: str) -> dict[str, float]:
    """Median ms: first request of never-asked URLs; the same URL again; again with If-None-Match."""
    first, again, not_modified = [], [], []
    with httpx.Client(timeout=60) as client:
        for i in range(repeats):
            url = (
                f"{base}/collections/garonne-wse/items/{ITEM}/tiles/WebMercatorQuad/12/2063/1495.png"
                f"?{QUERY}&return_mask=true&bench={tag}{i}"
            )
            t0 = time.perf_counter()
            r = client.get(url)
            first.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            client.get(url)
            again.append(time.perf_counter() - t0)
            etag = r.headers.get("etag")
            t0 = time.perf_counter()
            r304 = client.get(url, headers={"If-None-Match": etag} if etag else {})
            not_modified.append(time.perf_counter() - t0 if r304.status_code == 304 else float("nan"))
    med = lambda v: statistics.median(v) * 1000  # noqa: E731
    return {"first": med(first), "repeated": med(again), "if-none-match": med(not_modified)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiles", type=int, default=200, help="distinct tiles per target and round (200)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20, help="cold/repeated samples (20)")
    p.add_argument("--max-seconds", type=float, default=120, help="time budget per target and round (120)")
    args = p.parse_args(argv)
    command = "python bench/tiles.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"$ {command}", flush=True)

    root = Path(tempfile.mkdtemp(prefix="eolake-bench-tiles-"))
    os.chmod(root, 0o755)
    cluster = PostgresCluster(root / "pg")
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, True)
        cluster.start()
        stack.callback(cluster.stop, mode="immediate")
        cluster.migrate()
        data = root / "data"
        ingest(generate_hydrology(data / "demo" / "hydrology"), cluster.dsn())
        cog = str(data / "demo" / "hydrology" / "cog" / "garonne-wse-2023-01-01.tif")
        # Distinct tiles in every round too: no target's cache (ours renders once per URL) sees a repeat.
        pool = tiles_over(args.tiles * args.rounds)
        per_round = [pool[r * args.tiles : (r + 1) * args.tiles] for r in range(args.rounds)]
        ours_port, stock_port = free_port(), free_port()
        pids: dict[str, int] = {}
        ours = stack.enter_context(
            process(
                [sys.executable, "-m", "eolake_tiles"],
                {
                    "EOLAKE_TILES_DATABASE_URL": cluster.app_dsn(),
                    "EOLAKE_TILES_STORAGE_PATH": str(data),
                    "EOLAKE_TILES_PORT": str(ours_port),
                    "EOLAKE_TILES_PUBLIC_URL": f"http://127.0.0.1:{ours_port}",
                    "EOLAKE_TILES_LOG_LEVEL": "warning",
                },
                root / "ours.log",
                f"http://127.0.0.1:{ours_port}/tiles",
                "/readyz",
                pids,
            )
        )
        stock = stack.enter_context(
            process(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "titiler.pgstac.main:app",
                    "--port",
                    str(stock_port),
                    "--workers",
                    "1",
                ],
                {"DATABASE_URL": cluster.app_dsn()},
                root / "stock.log",
                f"http://127.0.0.1:{stock_port}",
                "/healthz",
                pids,
            )
        )
        targets = {
            "rio-tiler in-process": lambda ts: direct_run(cog, ts, args.concurrency),
            "stock titiler-pgstac": lambda ts: asyncio.run(http_run(stock, ts, args.concurrency, args.max_seconds)),
            "eolake tiles": lambda ts: asyncio.run(http_run(ours, ts, args.concurrency, args.max_seconds)),
        }
        warm = [(t.z, t.x, t.y) for t in morecantile.tms.get("WebMercatorQuad").tiles(*BOUNDS, zooms=[10, 11])]
        for run in targets.values():
            run(warm)
        results: dict[str, list] = {name: [[], 0, 0.0, 0.0] for name in targets}
        servers = {"stock titiler-pgstac": [pids[stock]], "eolake tiles": [pids[ours]], "rio-tiler in-process": []}
        postmaster = int((cluster.data / "postmaster.pid").read_text().split("\n", 1)[0])
        names = list(targets)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                cpu_before = cpu_seconds([*servers[name], postmaster])
                lat, err, wall = targets[name](per_round[r])
                results[name][0] += lat
                results[name][1] += err
                results[name][2] += wall
                results[name][3] += cpu_seconds([*servers[name], postmaster]) - cpu_before
        print(
            f"\n{len(pool)} distinct tiles in {args.rounds} rounds, concurrency {args.concurrency}, "
            f"zooms {sorted({t[0] for t in pool})}, one COG ({Path(cog).name})"
        )
        print(f"{'target':24} {'tiles/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'errors':>6} {'CPU ms/tile':>12}")
        figures = {}
        for name, (lat, err, wall, cpu) in results.items():
            rate = len(lat) / wall if wall else float("nan")
            figures[name] = (rate, percentile(lat, 95) * 1000)
            per_tile = f"{1000 * cpu / len(lat):12.1f}" if servers[name] and lat else f"{'-':>12}"
            print(
                f"{name:24} {rate:8.1f} {percentile(lat, 50) * 1000:8.1f} {percentile(lat, 95) * 1000:8.1f} "
                f"{err:6d} {per_tile}"
            )
        print("CPU ms/tile: the server's and PostgreSQL's CPU time while that target ran, per tile")
        ours_rate, ours_p95 = figures["eolake tiles"]
        for other in ("stock titiler-pgstac", "rio-tiler in-process"):
            rate, p95 = figures[other]
            print(f"ratio eolake / {other}: tiles/s x{ours_rate / rate:.2f}, p95 x{ours_p95 / p95:.2f}")
        print("\nfirst vs repeated tile (median ms over", args.repeats, "URLs)")
        for name, base in (("stock titiler-pgstac", stock), ("eolake tiles", ours)):
            c = cold_vs_repeated(base, args.repeats, name.split()[0])
            print(
                f"{name:24} first {c['first']:7.1f}  repeated {c['repeated']:7.1f}  "
                f"If-None-Match {c['if-none-match']:7.1f}  (first/repeated x{c['first'] / c['repeated']:.1f})"
            )
        print(f"\n$ {command}")


if __name__ == "__main__":
    main()
