"""Usage analytics: Matomo hits reach a configured endpoint (a loopback receiver), never slow a request, and
nothing is sent without configuration."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from eolake.embedded.postgres import free_port
from eolake_catalog.settings import CatalogSettings
from eolake_kit import Principal, ServiceSettings, install_kit, principal
from eolake_kit.auth import create_api_key
from eolake_kit.matomo import page_view_config, visitor_hash
from eolake_spec import load_stack
from servers import served, wait_until

PUBLIC = "https://eolake.example.org"
UA = "eolake-tests/1.0 (analytics)"


@contextmanager
def receiver(delay: float = 0.0):
    """A loopback Matomo: records each tracking request (bulk POSTs and single GETs) after `delay` seconds."""
    seen: dict[str, list] = {"hits": [], "bodies": [], "paths": []}

    class Matomo(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._answer(
                body, [dict(parse_qsl(r.removeprefix("?"), keep_blank_values=True)) for r in body.get("requests", [])]
            )

        def do_GET(self):
            self._answer(None, [dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))])

        def _answer(self, body, hits):
            time.sleep(delay)
            seen["paths"].append(urlsplit(self.path).path)
            seen["bodies"].append(body)
            seen["hits"].extend(hits)
            try:
                payload = json.dumps({"status": "success", "tracked": len(hits), "invalid": 0}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the tracker gave up waiting
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Matomo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


def kit_app(service: str, **settings) -> FastAPI:
    """A kit service; each test names its own, as metrics are per process."""
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict:
        return {"id": item_id}

    @app.get("/whoami")
    async def whoami(who: Principal = Depends(principal)) -> dict:
        return {"subject": who.subject}

    @app.get("/tasks")
    async def tasks() -> list[str]:
        return sorted(t.get_name() for t in asyncio.all_tasks())

    @app.get("/state")
    async def state(request: Request) -> dict:
        return {"matomo": request.app.state.matomo is not None}

    return install_kit(app, ServiceSettings(service_name=service, public_url=PUBLIC, root_path="/api", **settings))


def metric(base: str, name: str, service: str) -> float:
    prefix = f'{name}{{service="{service}"}} '
    text = httpx.get(base + "/metrics").text
    return next((float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix)), 0.0)


def test_api_requests_are_tracked_with_the_documented_parameters(tmp_path):
    keys = tmp_path / "keys.json"
    key = create_api_key(keys, "robot", "user")
    with receiver() as (matomo, seen):
        app = kit_app(
            "tracked",
            matomo_url=matomo + "/",
            matomo_site_id=7,
            matomo_token="matomo-secret-token",
            auth={"api_keys_file": keys},
        )
        with served(app) as url:
            headers = {"User-Agent": UA, "Accept-Language": "fr-FR,fr;q=0.9"}
            assert (
                httpx.get(url + "/api/items/42?limit=3&api_key=leaked&token=leaked", headers=headers).status_code == 200
            )
            assert httpx.get(url + "/api/whoami", headers={**headers, "X-API-Key": key}).json() == {
                "subject": "apikey:robot"
            }
            for probe in ("/healthz", "/readyz", "/metrics", "/api/healthz"):
                assert httpx.get(url + probe).status_code == 200
            assert httpx.get(url + "/api/no/such/route").status_code == 404
            assert "matomo-tracker" in httpx.get(url + "/api/tasks").json()
            assert wait_until(lambda: len(seen["hits"]) >= 3, timeout=10), seen
            time.sleep(0.3)  # anything else (it should not come) would arrive now
            sent = metric(url, "eolake_matomo_sent_total", "tracked")

    assert set(seen["paths"]) == {"/matomo.php"}
    assert all(body["token_auth"] == "matomo-secret-token" for body in seen["bodies"])
    hits = {hit["action_name"]: hit for hit in seen["hits"]}
    assert set(hits) == {"tracked GET /items/{item_id}", "tracked GET /whoami", "tracked GET /tasks"}, seen["hits"]
    assert sent == 3

    item = hits["tracked GET /items/{item_id}"]
    assert item["idsite"] == "7" and item["rec"] == "1" and item["apiv"] == "1" and item["send_image"] == "0"
    assert item["url"] == f"{PUBLIC}/api/items/42?limit=3", "public URL, credentials left out of the query"
    assert item["ua"] == UA and item["lang"] == "fr-FR,fr;q=0.9"
    assert 0 <= int(item["gt_ms"]) < 5000 and item["rand"].isdigit()
    assert "uid" not in item, "an anonymous caller has no user id"

    who = hits["tracked GET /whoami"]
    assert who["uid"] == visitor_hash("apikey:robot") and who["uid"] != "apikey:robot"
    assert who["url"] == f"{PUBLIC}/api/whoami"
    everything = json.dumps(seen["bodies"]) + json.dumps(seen["hits"])
    assert key not in everything and "leaked" not in everything
    assert all("token_auth" not in hit for hit in seen["hits"]), "the token never goes into a tracked URL"


def test_nothing_is_sent_or_started_without_a_matomo_url():
    with receiver() as (_, seen):
        app = kit_app("untracked", matomo_site_id=7)  # a site id alone does not turn tracking on
        with served(app) as url:
            for _ in range(3):
                assert httpx.get(url + "/api/items/1").status_code == 200
            assert httpx.get(url + "/api/state").json() == {"matomo": False}
            assert "matomo-tracker" not in httpx.get(url + "/api/tasks").json()
            assert 'eolake_matomo_sent_total{service="untracked"}' not in httpx.get(url + "/metrics").text
        time.sleep(0.2)
    assert seen["hits"] == [] and seen["bodies"] == []


def test_a_url_without_a_site_id_is_rejected_at_start():
    with pytest.raises(ValueError, match="matomo_url needs matomo_site_id"):
        ServiceSettings(matomo_url="https://matomo.example.org")


def timed_requests(url: str, count: int) -> list[float]:
    durations = []
    with httpx.Client() as client:
        for n in range(count):
            start = time.perf_counter()
            assert client.get(url + f"/api/items/{n}").status_code == 200
            durations.append(time.perf_counter() - start)
    return durations


def test_an_unreachable_matomo_does_not_slow_requests():
    # Nothing listens on that port: every batch fails at once.
    app = kit_app("unreachable", matomo_url=f"http://127.0.0.1:{free_port()}", matomo_site_id=1, matomo_timeout=1)
    with served(app) as url:
        durations = timed_requests(url, 20)
        assert max(durations) < 0.5, durations  # a bound, not a benchmark
        assert wait_until(lambda: metric(url, "eolake_matomo_failures_total", "unreachable") >= 20, timeout=10)
        assert metric(url, "eolake_matomo_sent_total", "unreachable") == 0


def test_a_hanging_matomo_does_not_slow_requests_and_sheds_load():
    # Matomo answers after 5 s; the tracker gives up after 1 s, and holds at most 3 hits meanwhile.
    with receiver(delay=5) as (matomo, _):
        app = kit_app("hanging", matomo_url=matomo, matomo_site_id=1, matomo_timeout=1, matomo_queue_size=3)
        with served(app) as url:
            durations = timed_requests(url, 20)
            assert max(durations) < 0.5, durations  # while Matomo sleeps 5 s
            assert metric(url, "eolake_matomo_dropped_total", "hanging") >= 10, "the bounded queue dropped the overflow"
            assert wait_until(lambda: metric(url, "eolake_matomo_failures_total", "hanging") >= 1, timeout=5)
            stopping = time.perf_counter()
        # Shutdown flushes for at most the Matomo timeout, then lets go.
        assert time.perf_counter() - stopping < 4


def test_spec_observability_reaches_the_service_settings(monkeypatch):
    platform = load_stack("local")
    observability = platform.observability.model_copy(
        update={"matomo_url": "https://matomo.example.org/", "matomo_site_id": 5}
    )
    env = platform.model_copy(update={"observability": observability}).service_env("catalog")
    assert env["EOLAKE_CATALOG_MATOMO_URL"] == "https://matomo.example.org/"
    assert env["EOLAKE_CATALOG_MATOMO_SITE_ID"] == "5"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = CatalogSettings()
    assert settings.matomo_enabled and settings.matomo_site_id == 5
    # The web view's JavaScript tracker reads the same two settings.
    assert page_view_config(settings) == {"tracker_url": "https://matomo.example.org/matomo.php", "site_id": 5}
    assert page_view_config(ServiceSettings()) is None
    assert not any("MATOMO" in key for key in load_stack("local").service_env("catalog"))
