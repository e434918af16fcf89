"""The download service and its workers as they run: real processes, a private PostgreSQL, real HTTP sources on
loopback, a real S3-compatible server (moto in server mode), and the Python client."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg
import pytest
from eolake_client import Client, Interrupted, NotFound, QuotaExceeded, Unauthorized

from eolake.demo import generate_hydrology
from eolake.ingest import ingest
from eolake_kit.auth import create_api_key
from servers import free_port, moto_server, private_cluster, service_process, wait_until

PROBLEM = "application/problem+json"
COLLECTION = "dl-test"
SLOW = bytes(range(256)) * 4096 * 2  # 2 MiB
FLAKY = b"flaky but fine\n" * 1000
CORRUPT = b"these bytes are not the ones the catalog describes\n" * 100
HELD = b"held until released\n" * 100


def multihash(data: bytes) -> str:
    return "1220" + hashlib.sha256(data).hexdigest()


class Source:
    """A loopback HTTP source: /slow streams 2 MiB slowly (with an ETag, and its rest from `Range: bytes=N-`),
    /flaky fails twice with 500, /corrupt sends other bytes than described, /held waits for release, /missing is a
    404."""

    def __init__(self):
        self.hits: dict[str, int] = {}
        self.sent: dict[str, list[tuple[int, int]]] = {}  # by name, each answer's (first byte, bytes sent)
        self.release = threading.Event()
        self.slow_delay = 0.15
        source = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.strip("/")
                source.hits[name] = source.hits.get(name, 0) + 1
                if name == "flaky" and source.hits[name] <= 2:
                    return self._send(500, b"try again")
                if name == "held":
                    source.release.wait(30)
                body = {"slow": SLOW, "flaky": FLAKY, "corrupt": CORRUPT, "held": HELD}.get(name)
                if body is None:
                    return self._send(404, b"no such thing")
                start = self._range_start(name, body)
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                if name == "slow":
                    self.send_header("ETag", '"slow-1"')
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                step = 64 * 1024 if name == "slow" else len(body)
                sent = source.sent.setdefault(name, [])
                sent.append((start, 0))
                try:
                    for i in range(start, len(body), step):
                        self.wfile.write(body[i : i + step])
                        sent[-1] = (start, sent[-1][1] + len(body[i : i + step]))
                        if name == "slow":
                            self.wfile.flush()
                            time.sleep(source.slow_delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _range_start(self, name: str, body: bytes) -> int:
                wanted = self.headers.get("Range", "")
                if name != "slow" or not wanted or self.headers.get("If-Range") != '"slow-1"':
                    return 0
                return int(wanted.removeprefix("bytes=").rstrip("-"))

            def _send(self, status, body):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://{self.host}/{name}"


def downloads_service(env: dict[str, str], log: Path):
    return service_process("eolake_downloads", env, log, own_public_url=True)


def stac_item(iid: str, assets: dict) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": iid,
        "collection": COLLECTION,
        "links": [],
        "bbox": [1.0, 43.0, 1.1, 43.1],
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[1.0, 43.0], [1.1, 43.0], [1.1, 43.1], [1.0, 43.1], [1.0, 43.0]]],
        },
        "properties": {"datetime": "2024-01-01T00:00:00Z"},
        "assets": assets,
    }


def asset(href: str, data: bytes | None = None, **extra) -> dict:
    a = {"href": href, "type": "application/octet-stream", "roles": ["data"], **extra}
    if data is not None:
        a |= {"file:checksum": multihash(data), "file:size": len(data)}
    return a


class Workers:
    """Worker processes, started and killed on demand."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env, self.logs, self.procs = env, logs, []

    def start(self, n: int = 1, extra: dict[str, str] | None = None) -> list[subprocess.Popen]:
        started = []
        for _ in range(n):
            log = open(self.logs / f"worker-{len(self.procs)}.log", "wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "eolake_downloads.worker"],
                env={**os.environ, **self.env, **(extra or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self.procs.append(proc)
            started.append(proc)
        return started

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    def ensure(self) -> None:
        if not any(p.poll() is None for p in self.procs):
            self.start()


@pytest.fixture(scope="module")
def world():
    root = Path(tempfile.mkdtemp(prefix="eolake-test-downloads-"))
    root.chmod(0o755)
    source = Source()
    try:
        with private_cluster("eolake-test-downloads-pg-") as cluster:
            storage = root / "storage"
            stac = generate_hydrology(storage / "demo" / "hydrology")
            secret = storage / "secret.bin"
            secret.write_bytes(b"not for you")
            items = [
                {
                    "type": "Collection",
                    "stac_version": "1.0.0",
                    "id": COLLECTION,
                    "description": "download tests",
                    "license": "CC-BY-4.0",
                    "links": [],
                    "extent": {
                        "spatial": {"bbox": [[1.0, 43.0, 2.0, 44.0]]},
                        "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]},
                    },
                },
                stac_item("slow", {"data": asset(source.url("slow"), SLOW)}),
                stac_item("flaky", {"data": asset(source.url("flaky"), FLAKY)}),
                stac_item("corrupt", {"data": asset(source.url("corrupt"), FLAKY)}),  # describes other bytes
                stac_item("held", {"data": asset(source.url("held"), HELD)}),
                stac_item("missing", {"data": asset(source.url("missing"))}),
                stac_item("traversal", {"data": asset(str(storage) + "/demo/../../../../etc/passwd")}),
                stac_item("outside", {"data": asset("/etc/hostname")}),
                stac_item("foreign", {"data": asset("https://example.org/data.tif")}),
                stac_item("eodag", {"data": asset("eodag://peps/S2A_XYZ")}),
                stac_item("huge", {"data": asset(str(secret), file_size=0) | {"file:size": 3 * 1024**3}}),
                stac_item("s3src", {"data": asset("s3://src-bucket/path/file.bin")}),
            ]
            extra = root / "dl-test.ndjson"
            extra.write_text("\n".join(json.dumps(i) for i in items) + "\n")
            report = ingest([*stac, extra], cluster.dsn())
            assert not report.rejected, report.rejected
            keys_file = root / "api-keys.json"
            keys = {
                name: create_api_key(keys_file, name, "user")
                for name in ("alice", "bob", "quota", "faults", "pgfault", "s3user", "tiers")
            }
            logs = root / "logs"
            logs.mkdir()
            with service_process(
                "eolake_catalog",
                {
                    "EOLAKE_CATALOG_DATABASE_URL": cluster.app_dsn(),
                    "EOLAKE_CATALOG_AUTH__API_KEYS_FILE": str(keys_file),
                },
                logs / "catalog.log",
                own_public_url=True,
            ) as catalog:
                env = {
                    "EOLAKE_DOWNLOADS_DATABASE_URL": cluster.app_dsn(),
                    "EOLAKE_DOWNLOADS_PEERS": json.dumps({"catalog": {"url": catalog}}),
                    "EOLAKE_DOWNLOADS_STORAGE_PATH": str(storage),
                    "EOLAKE_DOWNLOADS_AUTH__API_KEYS_FILE": str(keys_file),
                    "EOLAKE_DOWNLOADS_ALLOWED_HOSTS": json.dumps([source.host]),
                    "EOLAKE_DOWNLOADS_MAINTENANCE_INTERVAL": "0.5",
                    "EOLAKE_DOWNLOADS_STALLED_SECONDS": "3",
                    "EOLAKE_DOWNLOADS_HEARTBEAT_SECONDS": "0.5",
                    "EOLAKE_DOWNLOADS_RETRY_BASE_SECONDS": "0.1",
                    "EOLAKE_DOWNLOADS_QUOTA_BYTES": str(1024**3),
                    "EOLAKE_DOWNLOADS_QUOTA_CONCURRENT_ORDERS": "2",
                    "EOLAKE_DOWNLOADS_OFFLINE_PATH": str(root / "offline"),
                    "EOLAKE_DOWNLOADS_OFFLINE_DELAY_SECONDS": "0.2",
                    "EOLAKE_DOWNLOADS_PRIORITIES": json.dumps({COLLECTION: ["mirror", "local"]}),
                    "EOLAKE_DOWNLOADS_LOG_LEVEL": "warning",
                    "EOLAKE_DOWNLOADS_PROXY_SENDS_FILES": "true",  # when the gateway asks (the `gateway` fixture)
                }
                with downloads_service(env, logs / "downloads.log") as url:
                    workers = Workers(env, logs)
                    try:
                        yield {
                            "url": url,
                            "keys": keys,
                            "workers": workers,
                            "cluster": cluster,
                            "root": root,
                            "storage": storage,
                            "source": source,
                            "env": env,
                            "catalog": catalog,
                            "logs": logs,
                        }
                    finally:
                        workers.stop_all()
    finally:
        source.release.set()
        source.server.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def api(world, user: str | None = "alice") -> httpx.Client:
    headers = {"X-API-Key": world["keys"][user]} if user else {}
    return httpx.Client(base_url=world["url"], headers=headers, timeout=30)


def client(world, user: str = "alice") -> Client:
    # The service answers with and without its prefix; the client adds /downloads.
    return Client(world["url"], api_key=world["keys"][user], backoff=0.05)


def demo_items(days=("2023-01-01", "2023-01-16")) -> list[dict]:
    return [{"collection": "garonne-wse", "id": f"garonne-wse-{d}", "assets": ["wse"]} for d in days]


def wait_final(http: httpx.Client, order_id: str, timeout: float = 60) -> dict:
    def final():
        doc = http.get(f"/orders/{order_id}").json()
        return doc if doc.get("status") in ("succeeded", "failed", "canceled") else None

    doc = wait_until(final, timeout, 0.2)
    assert doc, http.get(f"/orders/{order_id}").json()
    return doc


def order(http: httpx.Client, items: list[dict]) -> dict:
    resp = http.post("/orders", json={"items": items})
    assert resp.status_code == 201, resp.text
    return resp.json()


# ---------------------------------------------------------------- happy path


def test_order_stage_download_verify_and_skip(world, tmp_path):
    world["workers"].ensure()
    c = client(world)
    placed = c.order(
        [("garonne-wse", "garonne-wse-2023-01-01"), ("garonne-wse", "garonne-wse-2023-01-16")], assets=["wse"]
    )
    assert placed["status"] == "ordered" and len(placed["files"]) == 2
    done = c.wait(placed["id"], timeout=60, interval=0.2)
    assert done["status"] == "succeeded", done
    assert done["progress"] == {"files": 2, "done": 2, "ready": 2, "bytes": done["progress"]["bytes"]}
    results = c.download(done, tmp_path, progress=False)
    source_dir = world["storage"] / "demo" / "hydrology" / "cog"
    for r in results:
        assert not r.skipped and r.transferred == r.size
        original = source_dir / ("garonne-wse-" + r.name.removeprefix("garonne-wse-").replace("-wse.tif", ".tif"))
        assert r.path.read_bytes() == original.read_bytes()
    for f in done["files"]:  # the catalog's file:checksum was verified and is reported
        assert f["checksum"] == multihash((tmp_path / f["name"]).read_bytes())
    again = c.download(done, tmp_path, progress=False)  # a re-run downloads nothing
    assert all(r.skipped and r.transferred == 0 for r in again)
    assert not list(tmp_path.glob("*.part"))
    listed = list(c.orders(limit=1))
    assert placed["id"] in [o["id"] for o in listed]


def test_download_headers_ranges_and_resume(world, tmp_path):
    world["workers"].ensure()
    http = api(world)
    done = wait_final(http, order(http, demo_items(("2023-01-31",)))["id"])
    f = done["files"][0]
    url = f"/orders/{done['id']}/files/{f['id']}"
    whole = http.get(url)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    size = len(whole.content)
    assert int(whole.headers["content-length"]) == size == f["size"]
    sha = hashlib.sha256(whole.content).hexdigest()
    assert whole.headers["x-checksum-sha256"] == sha and whole.headers["etag"] == f'"{sha}"'
    assert whole.headers["digest"].startswith("sha-256=") and whole.headers["last-modified"].endswith("GMT")
    part = http.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{size}"
    tail = http.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    for bad in (f"bytes={size}-", "bytes=50-10", "bytes=x-y"):
        r = http.get(url, headers={"Range": bad})
        assert r.status_code == 416, bad
        assert r.headers["content-type"] == PROBLEM and r.headers["content-range"] == f"bytes */{size}"
    multi = http.get(url, headers={"Range": "bytes=0-1,5-6"})  # several ranges: the whole file
    assert multi.status_code == 200 and multi.content == whole.content
    stale = http.get(url, headers={"Range": "bytes=10-", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == whole.content
    assert http.get(url, headers={"If-None-Match": f'"{sha}"'}).status_code == 304
    head = http.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(size)

    # The client stops halfway (.part kept), resumes with Range: only the missing half travels.
    c = client(world)
    with pytest.raises(Interrupted):
        c.download(done, tmp_path, progress=False, max_bytes=size // 2)
    partial = tmp_path / (f["name"] + ".part")
    assert partial.stat().st_size == size // 2 and not (tmp_path / f["name"]).exists()
    [resumed] = c.download(done, tmp_path, progress=False)
    assert resumed.transferred == size - size // 2
    assert resumed.path.read_bytes() == whole.content and not partial.exists()
    [rerun] = c.download(done, tmp_path, progress=False)
    assert rerun.skipped and rerun.transferred == 0

    metrics = httpx.get(world["url"] + "/metrics").text
    assert "eolake_download_bytes_served_total" in metrics and "eolake_download_queue_depth" in metrics


def test_cli_search_order_download_status(world, tmp_path):
    world["workers"].ensure()
    found = Client(world["catalog"]).search(collections=["garonne-wse"], max_items=2)
    assert len(list(found.items())) == 2
    cli = [sys.executable, "-m", "eolake_client.cli", "--url", world["url"], "--api-key", world["keys"]["alice"]]
    out = subprocess.run(
        [
            *cli,
            "order",
            "garonne-wse/garonne-wse-2023-04-16",
            "--assets",
            "wse",
            "--quiet",
            "--download",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    order_id = out.stdout.split()[0]
    assert "verified" in out.stdout and len(list(tmp_path.glob("*.tif"))) == 1
    again = subprocess.run(
        [*cli, "download", order_id, str(tmp_path), "--quiet"], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and "skipped" in again.stdout and "0 transferred" in again.stdout, again.stdout
    status = subprocess.run([*cli, "status", order_id], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "succeeded" in status.stdout
    missing = subprocess.run(
        [*cli, "status", "00000000-0000-0000-0000-000000000000"], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and "404" in missing.stderr and "no such order" in missing.stderr


def test_order_a_search(world):
    world["workers"].ensure()
    http = api(world)
    search = {"collections": ["garonne-wse"], "datetime": "2023-06-01T00:00:00Z/2023-07-31T23:59:59Z"}
    expected = httpx.post(world["catalog"] + "/search", json={**search, "limit": 100}).json()["features"]
    r = http.post("/orders", json={"search": search, "assets": ["wse"]})
    assert r.status_code == 201, r.text
    assert sorted(f["item"] for f in r.json()["files"]) == sorted(i["id"] for i in expected) and expected
    assert wait_final(http, r.json()["id"])["status"] == "succeeded"
    r = http.post("/orders", json={"search": {"collections": ["garonne-wse"], "bbox": [1, 2, 3]}})
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
    r = http.post("/orders", json={"search": {"collections": ["no-such-collection"]}})
    assert r.status_code == 400 and "no files" in r.json()["detail"]


def test_staged_files_expire_and_are_removed(world):
    world["workers"].ensure()
    http = api(world)
    done = wait_final(http, order(http, demo_items(("2023-05-01",)))["id"])
    f = done["files"][0]
    staged = world["storage"] / "staging" / done["id"] / f["id"]
    assert staged.exists()
    with psycopg.connect(world["cluster"].dsn(), autocommit=True) as conn:
        conn.execute("UPDATE downloads.files SET expires_at = now() - interval '1 second' WHERE id = %s", (f["id"],))
    assert wait_until(lambda: not staged.exists(), 30), "the periodic sweep did not remove the expired file"
    r = http.get(f"/orders/{done['id']}/files/{f['id']}")
    assert r.status_code == 410 and r.headers["content-type"] == PROBLEM
    assert http.get(f"/orders/{done['id']}").json()["files"][0]["state"] == "expired"


# ---------------------------------------------------------------- security and bad inputs


def test_auth_isolation_and_bad_inputs(world):
    world["workers"].ensure()
    anon = api(world, None)
    r = anon.get("/orders")
    assert r.status_code == 401 and r.headers["content-type"] == PROBLEM
    assert anon.post("/orders", json={"items": demo_items()}).status_code == 401
    with pytest.raises(Unauthorized):
        Client(world["url"], api_key="eol_wrong").status("00000000-0000-0000-0000-000000000000")

    alice, bob = api(world), api(world, "bob")
    mine = wait_final(alice, order(alice, demo_items(("2023-02-15",)))["id"])
    fid = mine["files"][0]["id"]
    for path in (f"/orders/{mine['id']}", f"/orders/{mine['id']}/files/{fid}"):
        r = bob.get(path)
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM, path
    assert bob.post(f"/orders/{mine['id']}/cancel").status_code == 404
    assert mine["id"] not in [o["id"] for o in bob.get("/orders").json()["orders"]]
    with pytest.raises(NotFound):
        client(world, "bob").status(mine["id"])
    assert alice.get("/orders/not-a-uuid").status_code == 404
    assert alice.get(f"/orders/{mine['id']}/files/nope").status_code == 404

    for item, why in (
        ("traversal", "traversal"),
        ("outside", "outside the allow-list"),
        ("foreign", "outside the allow-list"),
        ("eodag", "not configured"),
    ):
        r = alice.post("/orders", json={"items": [{"collection": COLLECTION, "id": item}]})
        assert r.status_code == 400 and why in r.json()["detail"], (item, r.text)
    bad_bodies = [
        {},
        {"items": []},
        {"items": [{"collection": "x"}]},
        {"items": "nope"},
        {"extra": 1, "items": []},
        {"items": [{"collection": "garonne-wse", "id": "garonne-wse-2023-01-01", "assets": ["nope"]}]},
    ]
    for body in bad_bodies:
        r = alice.post("/orders", json=body)
        assert r.status_code == 400 and r.headers["content-type"] == PROBLEM, (body, r.text)
    r = alice.post("/orders", json={"items": [{"collection": "garonne-wse", "id": "no-such-item"}]})
    assert r.status_code == 404
    assert alice.get("/orders", params={"token": "garbage"}).status_code == 400
    assert alice.get("/orders", params={"limit": 100000}).status_code == 400

    # Pagination walks every order once.
    seen, token = [], None
    while True:
        page = alice.get("/orders", params={"limit": 1, **({"token": token} if token else {})}).json()
        seen += [o["id"] for o in page["orders"]]
        nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
        if not nxt:
            break
        token = httpx.URL(nxt[0]).params["token"]
    assert len(seen) == len(set(seen)) >= 2 and mine["id"] in seen


def test_quotas(world):
    http = api(world, "quota")
    r = http.post("/orders", json={"items": [{"collection": COLLECTION, "id": "huge"}]})
    assert r.status_code == 429 and r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["limit"] == "bytes-per-period" and "bytes per period" in body["detail"] and body["reset"]
    assert int(r.headers["retry-after"]) > 0
    # Concurrent orders: two held orders in progress, the third is refused until one is canceled.
    held = [order(http, [{"collection": COLLECTION, "id": "held"}]) for _ in range(2)]
    with pytest.raises(QuotaExceeded) as exc:
        client(world, "quota").order([(COLLECTION, "held")])
    assert exc.value.limit == "concurrent-orders" and exc.value.retry_after and exc.value.reset
    canceled = http.post(f"/orders/{held[0]['id']}/cancel").json()
    assert canceled["status"] == "canceled" and all(f["state"] == "canceled" for f in canceled["files"])
    assert http.delete(f"/orders/{held[1]['id']}").json()["status"] == "canceled"
    world["source"].release.set()
    third = order(http, [{"collection": COLLECTION, "id": "held"}])
    world["workers"].ensure()
    assert wait_final(http, third["id"])["status"] == "succeeded"
    for h in held:  # canceled orders publish nothing
        assert not (world["storage"] / "staging" / h["id"]).exists()


# ---------------------------------------------------------------- faults


def test_transient_source_retried_and_permanent_failures_reported(world):
    world["workers"].ensure()
    http = api(world, "faults")
    flaky = wait_final(http, order(http, [{"collection": COLLECTION, "id": "flaky"}])["id"])
    assert flaky["status"] == "succeeded", flaky
    assert world["source"].hits["flaky"] == 3  # 500, 500, 200
    got = http.get(flaky["files"][0]["href"].split("/downloads", 1)[1])
    assert got.content == FLAKY

    bad = wait_final(http, order(http, [{"collection": COLLECTION, "id": "corrupt"}])["id"])
    assert bad["status"] == "failed" and "checksum mismatch" in bad["files"][0]["reason"]
    assert not (world["storage"] / "staging" / bad["id"]).exists()
    assert not list((world["storage"] / "staging" / ".tmp").glob("*"))  # nothing half-written left
    r = http.get(f"/orders/{bad['id']}/files/{bad['files'][0]['id']}")
    assert r.status_code == 409 and "checksum mismatch" in r.json()["detail"]

    missing = wait_final(http, order(http, [{"collection": COLLECTION, "id": "missing"}])["id"])
    assert missing["status"] == "failed" and "404" in missing["files"][0]["reason"]
    assert world["source"].hits["missing"] == 1  # a 404 is not retried


def test_worker_killed_mid_job_is_picked_up_again_and_resumes_its_copy(world):
    workers, source = world["workers"], world["source"]
    workers.stop_all()
    [first] = workers.start(1)
    http = api(world, "faults")
    placed = order(http, [{"collection": COLLECTION, "id": "slow"}])
    part = world["storage"] / "staging" / ".tmp" / f"{placed['files'][0]['id']}.part"
    assert wait_until(lambda: part.exists() and part.stat().st_size >= len(SLOW) // 4, 30), "no copy under way"
    first.send_signal(signal.SIGKILL)
    first.wait()
    kept = part.stat().st_size
    assert http.get(f"/orders/{placed['id']}").json()["status"] == "ordered"
    workers.start(1)
    done = wait_final(http, placed["id"], timeout=90)
    assert done["status"] == "succeeded", done["files"]
    assert source.hits["slow"] == 2
    (_, before_kill), (resumed_from, retry_sent) = source.sent["slow"]
    print(
        f"\nworker killed mid-copy: {len(SLOW)} bytes, {before_kill} sent before the kill, {kept} kept; "
        f"the retry asked from byte {resumed_from} and was sent {retry_sent}"
    )
    assert resumed_from == kept > 0 and retry_sent == len(SLOW) - kept  # only the missing bytes
    assert http.get(done["files"][0]["href"].split("/downloads", 1)[1]).content == SLOW
    assert done["files"][0]["checksum"] == multihash(SLOW)
    assert not list(part.parent.glob("*"))  # the copy published, its temporary name and note gone


def test_postgres_restart_loses_no_order(world):
    workers, cluster = world["workers"], world["cluster"]
    workers.stop_all()
    http = api(world, "pgfault")
    placed = order(http, demo_items(("2023-03-02", "2023-03-17")))
    cluster.stop()
    try:
        r = http.get(f"/orders/{placed['id']}")
        assert r.status_code == 503 and r.headers["content-type"] == PROBLEM
        assert httpx.get(world["url"] + "/readyz").status_code == 503
        assert httpx.get(world["url"] + "/healthz").status_code == 200
        # It starts while the database is down: it keeps trying, it does not exit; alive, but not ready.
        port = free_port()
        [worker] = workers.start(1, {"EOLAKE_DOWNLOADS_WORKER_METRICS_PORT": str(port)})
        probe = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: probe_status(probe + "/healthz") == 200, 90)
        assert probe_status(probe + "/readyz") == 503 and worker.poll() is None
    finally:
        cluster.start()
    assert wait_until(lambda: probe_status(probe + "/readyz") == 200, 90), "the worker never became ready"
    done = wait_final(http, placed["id"], timeout=90)
    assert done["status"] == "succeeded" and done["progress"]["ready"] == 2


def probe_status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return None


# ---------------------------------------------------------------- S3 (a real S3-compatible server on loopback)


@pytest.fixture(scope="module")
def moto(world):
    with moto_server(world["logs"] / "moto.log") as url:
        yield url


def test_s3_source_and_s3_staging(world, moto, tmp_path, monkeypatch):
    import boto3

    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    for k, v in creds.items():
        monkeypatch.setenv(k, v)
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
    s3.create_bucket(Bucket="src-bucket")
    s3.create_bucket(Bucket="staging-bucket")
    payload = os.urandom(300_000)
    s3.put_object(Bucket="src-bucket", Key="path/file.bin", Body=payload)
    local_only = ("EOLAKE_DOWNLOADS_OFFLINE_PATH",)  # the offline tier is restored into local storage
    env = {
        **{k: v for k, v in world["env"].items() if k not in local_only},
        **creds,
        "EOLAKE_DOWNLOADS_STORAGE_KIND": "s3",
        "EOLAKE_DOWNLOADS_S3_BUCKET": "staging-bucket",
        "EOLAKE_DOWNLOADS_S3_ENDPOINT": moto,
        "EOLAKE_DOWNLOADS_ALLOWED_BUCKETS": '["src-bucket"]',
    }
    world["workers"].stop_all()  # the local-storage workers must not take these jobs
    workers = Workers(env, world["logs"])
    with downloads_service(env, world["logs"] / "downloads-s3.log") as url:
        workers.start(1)
        try:
            http = httpx.Client(base_url=url, headers={"X-API-Key": world["keys"]["s3user"]}, timeout=30)
            placed = order(http, [{"collection": COLLECTION, "id": "s3src"}, *demo_items(("2023-04-01",))])
            done = wait_final(http, placed["id"])
            assert done["status"] == "succeeded", done
            keys = {o["Key"] for o in s3.list_objects_v2(Bucket="staging-bucket")["Contents"]}
            assert {f"staging/{done['id']}/{f['id']}" for f in done["files"]} <= keys
            s3file = done["files"][0]
            assert s3file["checksum"] == multihash(payload)  # no checksum in the item: computed and recorded
            part = http.get(f"/orders/{done['id']}/files/{s3file['id']}", headers={"Range": "bytes=1000-1999"})
            assert part.status_code == 206 and part.content == payload[1000:2000]
            results = Client(url, api_key=world["keys"]["s3user"]).download(done, tmp_path, progress=False)
            assert {r.name: r.path.read_bytes() for r in results}[s3file["name"]] == payload
            # A bucket outside the allow-list is refused at order time.
            r = api(world, "s3user").post("/orders", json={"items": [{"collection": COLLECTION, "id": "s3src"}]})
            assert r.status_code == 400 and "outside the allow-list" in r.json()["detail"]
        finally:
            workers.stop_all()


# ---------------------------------------------------------------- storage tiers and provider fallback

TAPE = b"kept on tape until asked for\n" * 4000
MIRRORED = b"on disk here, announced on a mirror first\n" * 1000


def add_items(world, *items: dict) -> None:
    path = world["root"] / f"extra-{items[0]['id']}.ndjson"
    path.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    report = ingest([path], world["cluster"].dsn())
    assert not report.rejected, report.rejected


@pytest.fixture(scope="module")
def offline_item(world) -> dict:
    """An item whose data is in the offline tier: an orderable placeholder in the catalog."""
    from eolake_downloads.tiers import mark_offline

    tape = world["root"] / "offline" / "tiers" / "tape.bin"
    tape.parent.mkdir(parents=True)
    tape.write_bytes(TAPE)
    item = mark_offline(stac_item("tape", {"data": asset(str(tape), TAPE)}), world["url"] + "/retrievals")
    add_items(world, item)
    return item


@pytest.fixture(scope="module")
def gateway(world):
    """One base URL for the catalog and the download service, as a user of the platform has."""
    from eolake.embedded.gateway import DEFAULT_LIMITS, create_gateway
    from eolake_kit.server import connection_options
    from servers import served

    routes = {"/stac": world["catalog"], "/downloads": world["url"]}
    app = create_gateway(routes, public_url="http://127.0.0.1", sendfile_roots=[world["storage"]])
    with served(app, proxy_headers=False, **connection_options(DEFAULT_LIMITS, zero_copy=True)) as url:
        yield url


def test_the_gateway_sends_staged_files_itself_once_the_service_authorised_them(world, gateway, tmp_path):
    world["workers"].ensure()
    http = api(world)
    done = wait_final(http, order(http, demo_items(("2023-01-31",)))["id"])
    f = done["files"][0]
    direct = http.get(f"/orders/{done['id']}/files/{f['id']}")
    url = f"/downloads/orders/{done['id']}/files/{f['id']}"
    via = httpx.Client(base_url=gateway, headers={"X-API-Key": world["keys"]["alice"]}, timeout=30)
    whole = via.get(url)
    assert whole.status_code == 200 and whole.content == direct.content and "x-sendfile" not in whole.headers
    for name in ("content-length", "etag", "digest", "last-modified", "content-disposition", "content-type"):
        assert whole.headers[name] == direct.headers[name], name
    size = len(whole.content)
    for wanted, status, body in (
        ("bytes=100-199", 206, whole.content[100:200]),
        ("bytes=-10", 206, whole.content[-10:]),
        (f"bytes={size - 1}-", 206, whole.content[-1:]),
        ("bytes=0-1,5-6", 200, whole.content),
    ):
        r = via.get(url, headers={"Range": wanted})
        assert (r.status_code, r.content) == (status, body), wanted
        assert r.headers["content-length"] == str(len(body)) and "x-sendfile" not in r.headers
    assert via.get(url, headers={"Range": "bytes=5-", "If-Range": '"other"'}).content == whole.content
    bad = via.get(url, headers={"Range": f"bytes={size}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{size}"
    # Authorisation stays with the service: another user, or none, gets no file (nor its path).
    for headers, status in (({"X-API-Key": world["keys"]["bob"]}, 404), ({"X-API-Key": ""}, 401)):
        r = httpx.get(gateway + url, headers=headers)
        assert r.status_code == status and "x-sendfile" not in r.headers and r.headers["content-type"] == PROBLEM
    # Only a proxy that shares the storage asks for the path: what the gateway forwards, the service honours.
    named = http.get(f"/orders/{done['id']}/files/{f['id']}", headers={"X-Sendfile-Type": "X-Sendfile"})
    staged = Path(named.headers["x-sendfile"])
    assert staged.is_relative_to(world["storage"]) and staged.read_bytes() == whole.content and named.content == b""
    # A download through the gateway cut at half resumes with only the missing half.
    doc = {**done, "files": [{**f, "href": gateway + url}]}
    c = Client(gateway, api_key=world["keys"]["alice"], backoff=0.05)
    with pytest.raises(Interrupted):
        c.download(doc, tmp_path, progress=False, max_bytes=size // 2)
    [resumed] = c.download(doc, tmp_path, progress=False)
    assert resumed.transferred == size - size // 2 and resumed.path.read_bytes() == whole.content


def test_offline_item_is_retrieved_then_downloaded_by_the_client(world, offline_item, gateway, tmp_path):
    world["workers"].ensure()
    c = Client(gateway, api_key=world["keys"]["tiers"], backoff=0.05)
    [found] = c.search(collections=[COLLECTION], ids=["tape"]).items_as_dicts()
    assert found["properties"]["storage:tier"] == "offline" and found["properties"]["order:status"] == "orderable"
    [link] = [x for x in found["links"] if x["rel"] == "retrieve"]
    assert link["method"] == "POST" and link["body"] == {"collection": COLLECTION, "id": "tape"}

    [result] = c.obtain(found, tmp_path, timeout=60, interval=0.1)  # retrieve → online → download, verified
    assert result.path.read_bytes() == TAPE and not result.skipped

    online = c.item(COLLECTION, "tape")
    assert online["properties"]["storage:tier"] == "online" and online["properties"]["order:status"] == "succeeded"
    assert not [x for x in online["links"] if x["rel"] == "retrieve"]
    restored = Path(online["assets"]["data"]["href"])
    assert restored == world["storage"] / "tiers" / "tape.bin" and restored.read_bytes() == TAPE
    retrieval = next(o for o in c.orders() if o["kind"] == "retrieval")
    assert retrieval["status"] == "succeeded" and retrieval["item"] == {"collection": COLLECTION, "id": "tape"}
    assert retrieval["providers"] == ["local"] and retrieval["fallbacks"] == []
    # Online now: an ordinary order; a retrieval is refused.
    again = c.order([(COLLECTION, "tape")])
    assert [
        r.path.read_bytes() for r in c.download(c.wait(again["id"], 60, 0.1), tmp_path / "again", progress=False)
    ] == [TAPE]
    r = api(world, "tiers").post("/retrievals", json={"collection": COLLECTION, "id": "tape"})
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM and "not offline" in r.json()["detail"]
    cli = [sys.executable, "-m", "eolake_client.cli", "--url", gateway, "--api-key", world["keys"]["tiers"]]
    out = subprocess.run([*cli, "retrieve", f"{COLLECTION}/tape"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not offline" in out.stderr and len(out.stderr.splitlines()) == 1, out.stderr


def test_the_command_line_retrieves_and_downloads(world, gateway, tmp_path):
    from eolake_downloads.tiers import mark_offline

    world["workers"].ensure()
    tape = world["root"] / "offline" / "tiers" / "cli.bin"
    tape.parent.mkdir(parents=True, exist_ok=True)
    tape.write_bytes(TAPE)
    add_items(world, mark_offline(stac_item("cli", {"data": asset(str(tape), TAPE)}), world["url"] + "/retrievals"))
    cli = [sys.executable, "-m", "eolake_client.cli", "--url", gateway, "--api-key", world["keys"]["tiers"]]
    out = subprocess.run(
        [*cli, "retrieve", f"{COLLECTION}/cli", "--quiet", "--download", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verified" in out.stdout and (tmp_path / "cli-data.bin").read_bytes() == TAPE


def test_retrieval_bad_inputs_and_one_order_per_item(world):
    from concurrent.futures import ThreadPoolExecutor

    from eolake_downloads.tiers import mark_offline

    world["workers"].stop_all()  # nothing staged meanwhile: the retrieval stays open while it is asked again
    tape = world["root"] / "offline" / "tiers" / "second.bin"
    tape.parent.mkdir(parents=True, exist_ok=True)
    tape.write_bytes(TAPE)
    add_items(world, mark_offline(stac_item("second", {"data": asset(str(tape), TAPE)}), world["url"] + "/retrievals"))
    http = api(world, "tiers")
    body = {"collection": COLLECTION, "id": "second"}

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: http.post("/retrievals", json=body), range(2)))
    answers.sort(key=lambda r: r.status_code)
    assert [r.status_code for r in answers] == [201, 409], [r.text for r in answers]
    first, second = answers[0].json(), answers[1]
    assert second.headers["content-type"] == PROBLEM and second.json()["order"] == first["id"]
    assert second.headers["location"].endswith(f"/orders/{first['id']}")
    with psycopg.connect(world["cluster"].dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM downloads.orders WHERE target_item = 'second'").fetchone()[0] == 1

    r = http.post("/orders", json={"items": [body]})  # ordered as if it were online
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM and r.json()["offline"] == ["dl-test/second"]
    for bad, status in (
        ({"collection": COLLECTION, "id": "no-such-item"}, 404),
        ({"collection": COLLECTION}, 400),
        ({**body, "assets": ["x"]}, 400),
        ({"collection": COLLECTION, "id": "slow"}, 409),
    ):
        r = http.post("/retrievals", json=bad)
        assert r.status_code == status and r.headers["content-type"] == PROBLEM, (bad, r.text)
    assert api(world, None).post("/retrievals", json=body).status_code == 401

    assert http.post(f"/orders/{first['id']}/cancel").json()["status"] == "canceled"
    retried = http.post("/retrievals", json=body)  # canceled: the item may be asked for again
    assert retried.status_code == 201 and retried.json()["id"] != first["id"]
    http.post(f"/orders/{retried.json()['id']}/cancel")
    world["workers"].ensure()


def test_order_falls_back_to_the_next_provider_and_says_so(world, tmp_path):
    world["workers"].ensure()
    local = world["storage"] / "tiers" / "mirrored.bin"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(MIRRORED)
    data = asset(str(local), MIRRORED) | {"alternate": {"mirror": {"href": world["source"].url("missing")}}}
    add_items(world, stac_item("mirrored", {"data": data}))
    c, http = client(world, "tiers"), api(world, "tiers")
    ref = [{"collection": COLLECTION, "id": "mirrored"}]

    # No provider named: the collection's priority puts the mirror first; it fails (404), local delivers.
    done = c.wait(order(http, ref)["id"], 60, 0.1)
    assert done["status"] == "succeeded" and done["providers"] == ["local"]
    [fallback] = done["fallbacks"]
    assert fallback["provider"] == "mirror" and "404" in fallback["reason"]
    assert done["files"][0]["provider"] == "local" and done["files"][0]["fallbacks"] == [
        {"provider": "mirror", "reason": fallback["reason"]}
    ]
    [got] = c.download(done, tmp_path, progress=False)
    assert got.path.read_bytes() == MIRRORED and done["files"][0]["checksum"] == multihash(MIRRORED)

    # That provider only: no fallback, the order fails and says why.
    only = c.wait(http.post("/orders", json={"items": ref, "provider": "mirror"}).json()["id"], 60, 0.1)
    assert only["status"] == "failed" and "404" in only["files"][0]["reason"] and only["fallbacks"] == []
    r = http.post("/orders", json={"items": ref, "provider": "nowhere"})
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM and "nowhere" in r.json()["detail"]
