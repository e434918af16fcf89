#!/usr/bin/env python3
"""Download service benchmark: one run, one 1 GiB file, everything on loopback.

    .venv/bin/python bench/downloads.py                    # ~2-3 minutes on 2 cores
    .venv/bin/python bench/downloads.py --size-mib 256 --orders 40     # a quicker run

Figures: (1) download throughput through the service (API key auth, Range-capable streaming) against a raw loopback
copy of the same file (python's http.server, the stock component, and `cp`); (2) a download interrupted at 50 %
and resumed transfers only the missing half; (3) orders per second the queue sustains with 1 and 2 workers.
The file is sparse (deterministic zeros); the cluster, the processes and the temp directory are removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg
from eolake_client import Client, Interrupted

from eolake.embedded import processes
from eolake.embedded.postgres import PostgresCluster, free_port
from eolake.ingest import ingest
from eolake_kit.auth import create_api_key

CHUNK = 1024 * 1024


class Procs:
    def __init__(self, logs: Path):
        self.logs, self.procs = logs, []

    def start(self, name: str, module: str, env: dict) -> subprocess.Popen:
        out = open(self.logs / f"{name}.log", "ab")
        p = subprocess.Popen(
            [sys.executable, "-m", module], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
        self.procs.append(p)
        return p

    def stop(self, procs=None) -> None:
        for p in procs or self.procs:  # all told first: they stop side by side
            if p.poll() is None:
                p.terminate()
        for p in procs or self.procs:
            processes.stop(p, 30)
        self.procs = [p for p in self.procs if p.poll() is None]


def read_all(url: str, headers: dict | None = None) -> tuple[int, float]:
    n, t0 = 0, time.perf_counter()
    with httpx.Client(timeout=120) as c, c.stream("GET", url, headers=headers or {}) as r:
        r.raise_for_status()
        for chunk in r.iter_raw(CHUNK):
            n += len(chunk)
    return n, time.perf_counter() - t0


def item(iid: str, path: Path, checksum: str, size: int) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": iid,
        "collection": "bench",
        "links": [],
        "bbox": [0, 0, 1, 1],
        "properties": {"datetime": "2024-01-01T00:00:00Z"},
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
        "assets": {
            "data": {
                "href": str(path),
                "roles": ["data"],
                "type": "application/octet-stream",
                "file:checksum": checksum,
                "file:size": size,
            }
        },
    }


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def orders_per_second(http: httpx.Client, dsn: str, n: int, timeout: float) -> tuple[float, bool]:
    with psycopg.connect(dsn) as conn:
        before = conn.execute("SELECT count(*) FROM downloads.orders WHERE status = 'succeeded'").fetchone()[0]
    t0 = time.perf_counter()
    for _ in range(n):
        r = http.post("/downloads/orders", json={"items": [{"collection": "bench", "id": "small"}]})
        r.raise_for_status()
    done = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.perf_counter() - t0 < timeout:
            done = conn.execute("SELECT count(*) FROM downloads.orders WHERE status = 'succeeded'").fetchone()[0]
            if done - before >= n:
                break
            time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    return (done - before) / elapsed, done - before >= n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--orders", type=int, default=60, help="orders per worker-count phase")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per phase at most")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    command = shlex.join([sys.executable, *sys.argv])
    print(f"$ {command}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="eolake-bench-downloads-"))
    root.chmod(0o755)
    logs = root / "logs"
    logs.mkdir()
    procs = Procs(logs)
    cluster = PostgresCluster(root / "pg")
    results: dict = {"command": command, "size_bytes": args.size_mib * CHUNK}
    try:
        cluster.start()
        cluster.migrate()
        storage = root / "storage"
        (storage / "src").mkdir(parents=True)
        big, small = storage / "src" / "big.bin", storage / "src" / "small.bin"
        with open(big, "wb") as f:  # sparse, deterministic: zeros
            f.truncate(args.size_mib * CHUNK)
        small.write_bytes(bytes(range(256)) * 256)  # 64 KiB
        size = big.stat().st_size
        print(f"file: {size} bytes (sparse), hashing...", flush=True)
        big_sum = "1220" + sha256(big)
        catalog_file = root / "bench.ndjson"
        collection = {
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": "bench",
            "description": "bench",
            "license": "CC0-1.0",
            "links": [],
            "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]}},
        }
        catalog_file.write_text(
            "\n".join(
                json.dumps(o)
                for o in (
                    collection,
                    item("big", big, big_sum, size),
                    item("small", small, "1220" + sha256(small), small.stat().st_size),
                )
            )
            + "\n"
        )
        ingest([catalog_file], cluster.dsn())
        keys = root / "keys.json"
        key = create_api_key(keys, "bench", "user")
        cport, dport = free_port(), free_port()
        catalog = procs.start(
            "catalog",
            "eolake_catalog",
            {
                "EOLAKE_CATALOG_DATABASE_URL": cluster.app_dsn(),
                "EOLAKE_CATALOG_PORT": str(cport),
                "EOLAKE_CATALOG_LOG_LEVEL": "warning",
            },
        )
        base = f"http://127.0.0.1:{dport}"
        env = {
            "EOLAKE_DOWNLOADS_DATABASE_URL": cluster.app_dsn(),
            "EOLAKE_DOWNLOADS_PORT": str(dport),
            "EOLAKE_DOWNLOADS_PUBLIC_URL": base,
            "EOLAKE_DOWNLOADS_PEERS": json.dumps({"catalog": {"url": f"http://127.0.0.1:{cport}/stac"}}),
            "EOLAKE_DOWNLOADS_STORAGE_PATH": str(storage),
            "EOLAKE_DOWNLOADS_AUTH__API_KEYS_FILE": str(keys),
            "EOLAKE_DOWNLOADS_QUOTA_CONCURRENT_ORDERS": "100000",
            "EOLAKE_DOWNLOADS_LOG_LEVEL": "warning",
            "EOLAKE_DOWNLOADS_QUOTA_BYTES": str(1 << 50),
            "EOLAKE_DOWNLOADS_MAINTENANCE_INTERVAL": "2",
        }
        downloads = procs.start("downloads", "eolake_downloads", env)
        processes.wait_serving(catalog, f"http://127.0.0.1:{cport}/healthz", logs / "catalog.log")
        processes.wait_serving(downloads, base + "/healthz", logs / "downloads.log")
        worker = procs.start("worker-1", "eolake_downloads.worker", env)
        client = Client(base, api_key=key)

        t0 = time.perf_counter()
        order = client.order([("bench", "big")])
        order = client.wait(order["id"], timeout=600, interval=0.2, max_interval=1)
        staged = time.perf_counter() - t0
        assert order["status"] == "succeeded", order
        results["stage_seconds"] = staged
        print(
            f"order → ready (copy + sha-256 + atomic rename): {staged:.2f} s ({size / staged / 1e6:.0f} MB/s)",
            flush=True,
        )

        # (1) throughput: service vs stock http.server vs cp, same file, same reader.
        href = order["files"][0]["href"]
        n, service_s = read_all(href, {"X-API-Key": key})
        assert n == size
        handler = functools.partial(SimpleHTTPRequestHandler, directory=str(storage / "src"))
        SimpleHTTPRequestHandler.log_message = lambda *a: None
        stock = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=stock.serve_forever, daemon=True).start()
        n, stock_s = read_all(f"http://127.0.0.1:{stock.server_address[1]}/big.bin")
        stock.shutdown()
        t0 = time.perf_counter()
        shutil.copyfile(big, root / "copy.bin")
        cp_s = time.perf_counter() - t0
        (root / "copy.bin").unlink()
        results |= {
            "service_mb_s": size / service_s / 1e6,
            "stock_http_mb_s": size / stock_s / 1e6,
            "cp_mb_s": size / cp_s / 1e6,
        }
        print(
            f"throughput: service {results['service_mb_s']:.0f} MB/s, stock http.server "
            f"{results['stock_http_mb_s']:.0f} MB/s (service/stock {stock_s / service_s:.2f}), "
            f"cp {results['cp_mb_s']:.0f} MB/s (service/cp {cp_s / service_s:.2f})",
            flush=True,
        )

        # (2) resume after 50 %.
        dest = root / "dest"
        with contextlib.suppress(Interrupted):
            client.download(order, dest, progress=False, max_bytes=size // 2)
        part = next(dest.glob("*.part")).stat().st_size
        t0 = time.perf_counter()
        [res] = client.download(order, dest, progress=False)
        resume_s = time.perf_counter() - t0
        [again] = client.download(order, dest, progress=False)
        results |= {
            "resume_partial_bytes": part,
            "resume_transferred": res.transferred,
            "resume_seconds_incl_verify": resume_s,
            "rerun_transferred": again.transferred,
        }
        print(
            f"resume: .part held {part} bytes, the resume transferred {res.transferred} bytes "
            f"({res.transferred / size:.0%} of the file; {resume_s:.2f} s with the full sha-256 check); "
            f"a re-run transferred {again.transferred}",
            flush=True,
        )
        shutil.rmtree(dest)
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:  # the 1 GiB staged copy: not needed now
            conn.execute("UPDATE downloads.files SET expires_at = now() - interval '1 s' WHERE state = 'ready'")

        # (3) orders/s with 1 then 2 workers (a 64 KiB file each: queue and bookkeeping cost, not bandwidth).
        http = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60)
        rate1, ok1 = orders_per_second(http, cluster.dsn(), args.orders, args.timeout)
        procs.start("worker-2", "eolake_downloads.worker", env)
        time.sleep(2)  # the second worker's start-up is not queue time
        rate2, ok2 = orders_per_second(http, cluster.dsn(), args.orders, args.timeout)
        results |= {"orders_per_s_1_worker": rate1, "orders_per_s_2_workers": rate2, "complete": ok1 and ok2}
        print(
            f"queue: {rate1:.1f} orders/s with 1 worker, {rate2:.1f} orders/s with 2 workers "
            f"(2 workers/1 worker {rate2 / rate1:.2f}; {args.orders} orders each, submit to all succeeded"
            f"{'' if ok1 and ok2 else '; TRUNCATED by --timeout'})",
            flush=True,
        )
        del worker
        print(f"\n$ {command}\n" + json.dumps(results, indent=2))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return 0
    finally:
        procs.stop()
        with contextlib.suppress(Exception):
            cluster.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
