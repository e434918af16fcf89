"""The download worker's probes report its state: /healthz fails when its event loop stops turning, /readyz when
its job loop has not reached the database lately or procrastinate's worker is not running (a real HTTP server on
loopback; the clock is the test's, so a stuck loop needs no waiting). test_downloads.py checks a real worker
process against a database that goes down and comes back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest
from eolake_downloads.worker import Health, serve_probes

from servers import free_port, wait_until


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def probes():
    clock = Clock()
    health = Health(ready_within=30, alive_within=30, clock=clock)
    server = serve_probes(health, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield health, clock, lambda path: httpx.get(url + path, timeout=5)
    finally:
        server.shutdown()
        server.server_close()


def test_ready_only_while_the_job_loop_reaches_the_database(probes):
    health, clock, get = probes
    assert get("/healthz").status_code == 503 and get("/readyz").status_code == 503  # nothing ran yet
    health.beat = clock.now
    assert get("/healthz").status_code == 200 and get("/readyz").status_code == 503  # alive, no sweep yet
    health.working, health.swept = True, clock.now
    assert get("/readyz").status_code == 200
    clock.now += 31
    health.beat = clock.now  # the event loop turns, but no sweep succeeded for 31 s: stuck on the database
    assert get("/healthz").status_code == 200 and get("/readyz").status_code == 503
    health.swept = clock.now
    assert get("/readyz").status_code == 200
    health.working = False  # procrastinate's worker stopped (the loop is reconnecting)
    assert get("/readyz").status_code == 503


def test_a_blocked_event_loop_fails_both_probes(probes):
    health, clock, get = probes
    health.beat = health.swept = clock.now
    health.working = True
    clock.now += 31  # no beat for 31 s: the event loop is blocked, whatever the last sweep said
    assert get("/healthz").status_code == 503 and get("/readyz").status_code == 503
    metrics = get("/metrics")
    assert metrics.status_code == 200 and "python_info" in metrics.text and get("/nope").status_code == 404


def test_the_beat_comes_from_the_running_event_loop():
    health = Health(ready_within=30)

    async def turn():
        beating = asyncio.create_task(health.beating())
        await asyncio.sleep(0)  # one turn of the loop
        beating.cancel()

    assert not health.alive()
    asyncio.run(turn())
    assert health.alive()


def test_worker_process_without_database_is_alive_but_not_ready(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "EOLAKE_DOWNLOADS_DATABASE_URL": f"postgresql://eolake@127.0.0.1:{free_port()}/eolake",
        "EOLAKE_DOWNLOADS_STORAGE_PATH": str(tmp_path),
        "EOLAKE_DOWNLOADS_WORKER_METRICS_PORT": str(port),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "eolake_downloads.worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"

    def status(path: str) -> int | None:
        try:
            return httpx.get(url + path, timeout=2).status_code
        except httpx.TransportError:
            return None

    try:
        assert wait_until(lambda: status("/healthz") == 200, 90), "the worker never answered its liveness probe"
        assert status("/readyz") == 503 and worker.poll() is None
    finally:
        worker.kill()  # SIGTERM would wait for the pending connection attempt to time out
        worker.wait(30)
