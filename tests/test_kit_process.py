"""The kit in a real process: graceful shutdown on SIGTERM, and spans exported over OTLP when configured."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from eolake.embedded import processes
from eolake.embedded.postgres import free_port
from servers import wait_until

APP = Path(__file__).with_name("kitapp.py")


def start(tmp_path: Path, **env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    full = {**os.environ, "EOLAKE_PORT": str(port), "EOLAKE_SERVICE_NAME": "kitapp", **env}
    log = tmp_path / "kitapp.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(APP)], env=full, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        processes.wait_serving(proc, url + "/healthz", log, ready=processes.ok)
    except processes.NotStarted:
        processes.stop(proc)
        raise
    return proc, url


def in_flight(url: str) -> float:
    metrics = httpx.get(url + "/metrics", timeout=5).text
    found = re.search(r'^eolake_http_requests_in_flight\{service="kitapp"\} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def test_sigterm_lets_in_flight_requests_finish(tmp_path):
    proc, url = start(tmp_path)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(r=httpx.get(url + "/slow?seconds=1.5", timeout=10)))
    worker.start()
    # The signal goes once the request is in flight: the gauge counts it besides the scrape that reads it.
    assert wait_until(lambda: in_flight(url) >= 2, timeout=10), (tmp_path / "kitapp.log").read_text()
    proc.send_signal(signal.SIGTERM)
    worker.join(10)
    assert result["r"].status_code == 200 and result["r"].json() == {"slept": 1.5}
    # uvicorn re-raises the signal once shutdown is complete, so the exit status is "killed by SIGTERM".
    assert proc.wait(10) in (0, -signal.SIGTERM)
    log = (tmp_path / "kitapp.log").read_text()
    assert log.index('"message":"Shutting down"') < log.index('"message":"Application shutdown complete."')


def test_spans_are_exported_over_otlp_when_configured(tmp_path):
    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{collector.server_port}/v1/traces"
    proc, url = start(tmp_path, EOLAKE_OTLP_ENDPOINT=endpoint, OTEL_BSP_SCHEDULE_DELAY="100")
    try:
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        httpx.get(url + "/slow?seconds=0", headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
        # Spans arrive in batches (start-up probes may come first): wait for the one with our trace.
        assert wait_until(lambda: any(bytes.fromhex(trace) in body for _, body in received), timeout=10)
        path, body = next((p, b) for p, b in received if bytes.fromhex(trace) in b)
        assert path == "/v1/traces"
        assert b"eolake-kitapp" in body and b"/slow" in body
    finally:
        processes.stop(proc, 10)
        collector.shutdown()


def test_no_export_without_endpoint(tmp_path):
    proc, url = start(tmp_path)
    try:
        assert httpx.get(url + "/slow?seconds=0").status_code == 200
    finally:
        processes.stop(proc, 10)
    assert "otlp" not in (tmp_path / "kitapp.log").read_text().lower()
