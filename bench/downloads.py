#!/usr/bin/env python3
"""Download service benchmark: one run, one 1 GiB file, everything on loopback, one client (curl) for every target.

    .venv/bin/python bench/downloads.py                    # ~4-5 minutes on 2 cores; needs nginx and curl
    .venv/bin/python bench/downloads.py --size-mib 256 --rounds 3 --orders 30     # a quicker run

Figures: (1) throughput of the same staged file by curl from nginx (the distribution's, sendfile on, a private
config, not root), the download service (API key, sendfile), the embedded gateway in front of it (sending the file
itself once the service authorised the request), the gateway relaying the bytes as it does other answers, nginx
proxying to the service as the on-premise proxy role does (no buffering), python's http.server, and `cp`; the
targets interleaved round by round, each round's load average printed, ratios to nginx; (2) a download interrupted
at 50 % and resumed, by the project's client and by `curl -C -`, direct and via the gateway: the bytes each resume
moved against the bytes missing; (3) orders per second the queue drains with 1 and 2 workers (interleaved phases;
orders placed while the workers are stopped, then drained, so placing is not timed as queue work). The file is
sparse (deterministic zeros); the cluster, the processes and the temp directory are removed at the end.
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
import signal
import statistics
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


def curl(url: str, headers: dict | None = None, *extra: str, out: str = "/dev/null") -> tuple[int, float]:
    """(bytes received, seconds) of one GET by curl into `out`: the same client for every target."""
    cmd = ["curl", "-sS", "--fail", "-o", out, "-w", "%{size_download} %{time_total}", *extra, url]
    for name, value in (headers or {}).items():
        cmd[1:1] = ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout.split()
    return int(out[0]), float(out[1])


def nginx(binary: str, root: Path, serve: Path, upstream: str, logs: Path, procs: Procs) -> tuple[str, str]:
    """nginx from the distribution as a non-root process with a private config: `serve` with sendfile on, and on a
    second port a proxy to `upstream` as the on-premise proxy role sets it for downloads (unbuffered, 256 KiB reads);
    the two base URLs."""
    port, proxy_port = free_port(), free_port()
    conf_dir = root / "nginx"
    (conf_dir / "tmp").mkdir(parents=True)
    temp = " ".join(f"{k}_temp_path {conf_dir / 'tmp'};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (conf_dir / "nginx.conf").write_text(
        f"daemon off; pid {conf_dir / 'nginx.pid'}; error_log {logs / 'nginx.log'} warn; worker_processes 1;\n"
        "events { worker_connections 64; }\n"
        f"http {{ access_log off; {temp} sendfile on; tcp_nopush on;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {serve}; }}\n"
        f"  server {{ listen 127.0.0.1:{proxy_port}; proxy_http_version 1.1; proxy_buffering off;\n"
        "    proxy_buffer_size 256k; proxy_buffers 4 256k; proxy_busy_buffers_size 256k;\n"
        f'    proxy_set_header Connection ""; location / {{ proxy_pass {upstream}; }} }} }}\n'
    )
    cmd = [binary, "-p", str(conf_dir), "-c", str(conf_dir / "nginx.conf"), "-e", str(logs / "nginx.log")]
    procs.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
    base = f"http://127.0.0.1:{port}"
    processes.wait_serving(procs.procs[-1], base + "/", logs / "nginx.log")
    return base, f"http://127.0.0.1:{proxy_port}"


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes and their children (nginx's worker), from /proc."""
    return sum(cpu_ticks(pid) for pid in pids) / os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(fields[11]) + int(fields[12]) + sum(cpu_ticks(int(c)) for c in children)  # utime + stime


def throughput(targets: dict[str, tuple[str, dict, list[int]]], size: int, rounds: int) -> tuple[dict, list]:
    """MB/s per target by curl, the targets interleaved (each round starts one further along), and the CPU seconds
    per GiB the serving processes spent (the load of the machine does not change it much); the medians, and each
    round's figures with the load average at its end."""
    names, runs = list(targets), []
    for r in range(rounds):
        figures, cpu = {}, {}
        for name in names[r % len(names) :] + names[: r % len(names)]:
            url, headers, pids = targets[name]
            before = cpu_seconds(pids)
            n, seconds = curl(url, headers)
            assert n == size, (name, n)
            figures[name] = size / seconds / 1e6
            cpu[name] = (cpu_seconds(pids) - before) / (size / 2**30)
        runs.append({"mb_s": figures, "cpu_s_per_gib": cpu, "load_1m": os.getloadavg()[0]})
        print(
            f"  round {r + 1}: " + ", ".join(f"{k} {v:,.0f}" for k, v in figures.items()) + " MB/s"
            f" (load average {runs[-1]['load_1m']:.2f})",
            flush=True,
        )
    return {name: statistics.median(run["mb_s"][name] for run in runs) for name in names}, runs


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


def make_catalog(root: Path, storage: Path, size_mib: int, dsn: str) -> int:
    """The source files (a sparse big one, a 64 KiB one) and their catalog; the big one's size."""
    (storage / "src").mkdir(parents=True)
    big, small = storage / "src" / "big.bin", storage / "src" / "small.bin"
    with open(big, "wb") as f:  # sparse, deterministic: zeros
        f.truncate(size_mib * CHUNK)
    small.write_bytes(bytes(range(256)) * 256)  # 64 KiB
    size = big.stat().st_size
    print(f"file: {size} bytes (sparse), hashing...", flush=True)
    collection = {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": "bench",
        "description": "bench",
        "license": "CC0-1.0",
        "links": [],
        "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]}},
    }
    records = (
        collection,
        item("big", big, "1220" + sha256(big), size),
        item("small", small, "1220" + sha256(small), small.stat().st_size),
    )
    catalog_file = root / "bench.ndjson"
    catalog_file.write_text("\n".join(json.dumps(o) for o in records) + "\n")
    ingest([catalog_file], dsn)
    return size


def start_services(
    procs: Procs, cluster: PostgresCluster, storage: Path, keys: Path, logs: Path
) -> tuple[str, dict, int]:
    """The catalog and the download service (which names files to a gateway that asks); its base URL, the
    environment its workers share, and its process id."""
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
        "EOLAKE_DOWNLOADS_PROXY_SENDS_FILES": "true",
        "EOLAKE_DOWNLOADS_RATE_LIMIT__REQUESTS_PER_SECOND": "100000",  # the bench places orders back to back
        "EOLAKE_DOWNLOADS_RATE_LIMIT__BURST": "100000",
    }
    downloads = procs.start("downloads", "eolake_downloads", env)
    processes.wait_serving(catalog, f"http://127.0.0.1:{cport}/healthz", logs / "catalog.log")
    processes.wait_serving(downloads, base + "/healthz", logs / "downloads.log")
    return base, env, downloads.pid


def start_gateway(procs: Procs, upstream: str, storage: Path | None, log: Path) -> tuple[str, int]:
    """The embedded gateway in front of the download service: sending staged files itself (`storage`: the storage
    it shares), or relaying the bytes as it does for any other answer (None)."""
    port = free_port()
    env = {
        "EOLAKE_GATEWAY_ROUTES": json.dumps({"/downloads": [upstream]}),
        "EOLAKE_GATEWAY_PORT": str(port),
        "EOLAKE_GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "EOLAKE_LOG_LEVEL": "warning",
    }
    if storage is not None:
        env["EOLAKE_GATEWAY_SENDFILE_ROOTS"] = json.dumps([str(storage)])
    gateway = procs.start(log.stem, "eolake.embedded.gateway", env)
    url = f"http://127.0.0.1:{port}"
    processes.wait_serving(gateway, url + "/-/healthz", log)
    return url, gateway.pid


def stock_server(directory: Path) -> ThreadingHTTPServer:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
    SimpleHTTPRequestHandler.log_message = lambda *a: None
    stock = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=stock.serve_forever, daemon=True).start()
    return stock


def worker_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM downloads.procrastinate_workers").fetchone()[0]


def succeeded(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM downloads.orders WHERE status = 'succeeded'").fetchone()[0]


def drain_rate(http: httpx.Client, dsn: str, pool: list[subprocess.Popen], k: int, n: int, timeout: float) -> dict:
    """Orders/s that `k` of the workers in `pool` drain: the `n` orders are placed while every worker is stopped
    (SIGSTOP), then `k` go on at once, so the drain is timed alone (placing the orders, through the API and the
    catalog, is timed apart: it is not the queue's cost)."""
    for w in pool:
        os.kill(w.pid, signal.SIGSTOP)
    before, t0 = succeeded(dsn), time.perf_counter()
    place(http, n)
    placed = time.perf_counter()
    for w in pool[:k]:
        os.kill(w.pid, signal.SIGCONT)
    done = wait_succeeded(dsn, before + n, placed + timeout) - before
    drained = time.perf_counter()
    # As the earlier bench measured: orders placed while the workers run, timed from the first to the last done.
    before, t1 = succeeded(dsn), time.perf_counter()
    place(http, n)
    together = wait_succeeded(dsn, before + n, time.perf_counter() + timeout) - before
    return {
        "workers": k,
        "drain_orders_per_s": done / (drained - placed),
        "place_orders_per_s": n / (placed - t0),
        "placed_and_drained_together_per_s": together / (time.perf_counter() - t1),
        "complete": done >= n and together >= n,
        "load_1m": os.getloadavg()[0],
    }


def place(http: httpx.Client, n: int) -> None:
    for _ in range(n):
        http.post("/downloads/orders", json={"items": [{"collection": "bench", "id": "small"}]}).raise_for_status()


def wait_succeeded(dsn: str, count: int, deadline: float) -> int:
    while (done := succeeded(dsn)) < count and time.perf_counter() < deadline:
        time.sleep(0.02)
    return done


def queue_scaling(http: httpx.Client, dsn: str, workers: list, n: int, rounds: int, timeout: float) -> dict:
    """Each round a 1-worker phase then a 2-worker phase; the ratio of each round's pair (moments apart), and its
    median over the rounds, for the drain and for placing and draining together."""
    phases = [drain_rate(http, dsn, workers, k, n, timeout) for _ in range(rounds) for k in (1, 2)]
    for w in workers:
        os.kill(w.pid, signal.SIGCONT)
    for p in phases:
        print(
            f"queue, {p['workers']} worker(s): drained {p['drain_orders_per_s']:.1f} orders/s (placed at "
            f"{p['place_orders_per_s']:.1f}/s; placed and drained together, as the earlier bench timed it: "
            f"{p['placed_and_drained_together_per_s']:.1f}/s; load average {p['load_1m']:.2f})"
            f"{'' if p['complete'] else '; TRUNCATED by --timeout'}",
            flush=True,
        )
    pairs = list(zip(phases[::2], phases[1::2], strict=True))
    drain = statistics.median(two["drain_orders_per_s"] / one["drain_orders_per_s"] for one, two in pairs)
    key = "placed_and_drained_together_per_s"
    together = statistics.median(two[key] / one[key] for one, two in pairs)
    print(
        f"queue, 2 workers / 1 worker (median of the rounds' ratios): {drain:.2f} drained, {together:.2f} placed and "
        "drained together",
        flush=True,
    )
    return {"queue_phases": phases, "queue_2_over_1_drained": drain, "queue_2_over_1_together": together}


def order_big(client: Client) -> tuple[dict, float]:
    t0 = time.perf_counter()
    order = client.order([("bench", "big")])
    order = client.wait(order["id"], timeout=600, interval=0.2, max_interval=1)
    assert order["status"] == "succeeded", order
    return order, time.perf_counter() - t0


def resume(client: Client, key: str, order: dict, dest: Path, size: int) -> dict:
    """The client stops at 50 % (its .part kept) and resumes; then curl resumes another half copy (-C -): both
    must move only the missing bytes, and the file must come out whole."""
    with contextlib.suppress(Interrupted):
        client.download(order, dest, progress=False, max_bytes=size // 2)
    [part_file] = dest.glob("*.part")
    part = part_file.stat().st_size
    shutil.copyfile(part_file, dest / "curl.bin")
    [res] = client.download(order, dest, progress=False)
    [again] = client.download(order, dest, progress=False)
    n, _ = curl(order["files"][0]["href"], {"X-API-Key": key}, "-C", "-", out=str(dest / "curl.bin"))
    curl_whole = sha256(dest / "curl.bin") == sha256(res.path)
    shutil.rmtree(dest)
    return {
        "partial_bytes": part,
        "client_resume_transferred": res.transferred,
        "rerun_transferred": again.transferred,
        "curl_resume_transferred": n,
        "curl_file_whole": curl_whole,
        "missing_bytes": size - part,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=9, help="interleaved rounds of the throughput targets")
    ap.add_argument("--orders", type=int, default=60, help="orders per queue phase")
    ap.add_argument("--queue-rounds", type=int, default=3, help="1-worker and 2-worker phases, interleaved")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per queue phase at most")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    for tool in (args.nginx, "curl"):
        if not shutil.which(tool):
            print(f"{tool} not found: apt-get install nginx curl (or --nginx PATH)", file=sys.stderr)
            return 2
    command = shlex.join([sys.executable, *sys.argv])
    print(f"$ {command}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="eolake-bench-downloads-"))
    root.chmod(0o755)
    logs = root / "logs"
    logs.mkdir()
    procs = Procs(logs)
    cluster = PostgresCluster(root / "pg")
    results: dict = {"command": command, "size_bytes": args.size_mib * CHUNK, "load_1m_start": os.getloadavg()[0]}
    try:
        cluster.start()
        cluster.migrate()
        storage = root / "storage"
        size = make_catalog(root, storage, args.size_mib, cluster.dsn())
        key = create_api_key(root / "keys.json", "bench", "user")
        base, env, service_pid = start_services(procs, cluster, storage, root / "keys.json", logs)
        gateways = {
            name: start_gateway(procs, base, storage if sends else None, logs / f"{name}.log")
            for name, sends in (("gateway", True), ("gateway-proxying", False))
        }
        workers = [procs.start("worker-1", "eolake_downloads.worker", env)]
        client = Client(base, api_key=key)

        order, staged = order_big(client)
        results["stage_seconds"] = staged
        print(f"order → ready (copy + sha-256 + atomic rename): {staged:.2f} s ({size / staged / 1e6:.0f} MB/s)")

        # (1) throughput: the same staged file, the same client (curl), targets interleaved.
        href = order["files"][0]["href"]
        below = href.removeprefix(base)
        with psycopg.connect(cluster.dsn()) as conn:
            location = conn.execute("SELECT location FROM downloads.files WHERE state = 'ready'").fetchone()[0]
        auth = {"X-API-Key": key}
        stock = stock_server(storage)
        stock_url = f"http://127.0.0.1:{stock.server_address[1]}"
        staged_path = "/" + str(Path(location).relative_to(storage))
        static, proxy = nginx(args.nginx, root, storage, base, logs, procs)
        nginx_pid = procs.procs[-1].pid
        targets = {
            "nginx": (static + staged_path, {}, [nginx_pid]),
            "service": (href, auth, [service_pid]),
            "gateway": (gateways["gateway"][0] + below, auth, [gateways["gateway"][1], service_pid]),
            "gateway-proxying": (
                gateways["gateway-proxying"][0] + below,
                auth,
                [gateways["gateway-proxying"][1], service_pid],
            ),
            "nginx-proxy": (proxy + below, auth, [nginx_pid, service_pid]),
            "http.server": (stock_url + staged_path, {}, [os.getpid()]),
        }
        print(f"throughput by curl ({args.rounds} rounds, interleaved):", flush=True)
        medians, runs = throughput(targets, size, args.rounds)
        stock.shutdown()
        t0 = time.perf_counter()
        shutil.copyfile(location, root / "copy.bin")
        cp_mb_s = size / (time.perf_counter() - t0) / 1e6
        (root / "copy.bin").unlink()
        # Each round's ratio pairs figures taken moments apart: the machine's load drifts less within a round.
        ratios = {name: statistics.median(r["mb_s"][name] / r["mb_s"]["nginx"] for r in runs) for name in medians}
        cpu = {name: statistics.median(r["cpu_s_per_gib"][name] for r in runs) for name in medians}
        results |= {
            "throughput_mb_s": medians,
            "cp_mb_s": cp_mb_s,
            "ratio_to_nginx": ratios,
            "cpu_s_per_gib": cpu,
            "rounds": runs,
        }
        print(
            "medians: "
            + ", ".join(f"{k} {v:,.0f} MB/s" for k, v in medians.items())
            + f"; cp {cp_mb_s:,.0f} MB/s\nto nginx (median of the rounds' ratios): "
            + ", ".join(f"{k} {v:.2f}×" for k, v in ratios.items() if k != "nginx")
            + "\nCPU seconds per GiB of the serving processes (median): "
            + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()),
            flush=True,
        )

        # (2) resume after 50 %, direct and through the gateway.
        results["resume"] = {}
        for name, url in (("service", base), ("gateway", gateways["gateway"][0])):
            via = {**order, "files": [{**order["files"][0], "href": url + below}]}
            r = results["resume"][name] = resume(Client(url, api_key=key), key, via, root / f"dest-{name}", size)
            print(
                f"resume ({name}): .part held {r['partial_bytes']}, missing {r['missing_bytes']}; the client's resume "
                f"moved {r['client_resume_transferred']}, curl -C - moved {r['curl_resume_transferred']} "
                f"(whole: {r['curl_file_whole']}); a re-run moved {r['rerun_transferred']}",
                flush=True,
            )
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:  # the 1 GiB staged copy: not needed now
            conn.execute("UPDATE downloads.files SET expires_at = now() - interval '1 s' WHERE state = 'ready'")

        # (3) queue drain with 1 and 2 workers, interleaved (64 KiB files: queue and bookkeeping cost).
        workers.append(procs.start("worker-2", "eolake_downloads.worker", env))
        processes.wait_until(lambda: worker_count(cluster.dsn()) == 2, 60)
        http = httpx.Client(base_url=base, headers=auth, timeout=60)
        results |= queue_scaling(http, cluster.dsn(), workers, args.orders, args.queue_rounds, args.timeout)
        results["load_1m_end"] = os.getloadavg()[0]
        print(f"\n$ {command}\n" + json.dumps(results, indent=2))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return 0
    finally:
        for p in procs.procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
        procs.stop()
        with contextlib.suppress(Exception):
            cluster.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
