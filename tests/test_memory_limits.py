"""The embedded runner holds each process to its memory bound, and brings back a process the bound killed.

The child is a small HTTP server that allocates (and touches) as much memory as it is asked to: a service with a
runaway request, without depending on which request of which service can still run away. The supervisor's own
restart loop (`Supervisor.watch`) runs it, under the mechanism the machine allows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from eolake.embedded.broker import Broker
from eolake.embedded.limits import MemoryLimits
from eolake.embedded.postgres import free_port
from eolake.embedded.state import StateDir
from eolake.embedded.supervisor import Child, Supervisor, service_children
from eolake_spec import SpecError, load_stack

MiB = 2**20
HOG = """
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

held = []

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlsplit(self.path)
        status, body = 200, str(os.getpid())
        if url.path == "/grow":
            try:
                held.append(b"x" * (int(parse_qs(url.query)["mb"][0]) * 2**20))  # written, so resident
            except MemoryError:
                status, body = 500, "MemoryError"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def hog(tmp_path: Path, limit: int) -> Child:
    script = tmp_path / "hog.py"
    script.write_text(HOG)
    port = free_port()
    return Child(
        "hog",
        [sys.executable, str(script), str(port)],
        dict(os.environ),
        tmp_path / "hog.log",
        f"http://127.0.0.1:{port}",
        "/readyz",
        limit,
    )


def ready_pid(child: Child, timeout: float = 30, other_than: int | None = None) -> int:
    """The pid the child's /readyz reports, once it answers (from a process other than `other_than`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(child.upstream + child.probe, timeout=2)
            if answer.status_code == 200 and int(answer.text) != other_than:
                return int(answer.text)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(
        f"{child.name} did not answer {child.probe} within {timeout} s: {child.log_path.read_text()[-2000:]}"
    )


@pytest.fixture
def supervisor(tmp_path):
    """A supervisor whose restart loop runs in a thread (no database, no services: the children the test adds)."""
    sup = Supervisor(load_stack("local"), StateDir(tmp_path), "local")
    watcher = threading.Thread(target=sup.watch, daemon=True)
    yield sup, watcher
    sup.stopping = True
    if watcher.is_alive():
        watcher.join(10)
    for child in sup.children:
        child.stop()
    sup.limits.release()


def test_a_process_killed_by_its_cgroup_bound_is_restarted(supervisor, tmp_path):
    sup, watcher = supervisor
    sup.limits = MemoryLimits.detect(f"eolake-test-{os.getpid()}")
    if sup.limits.mechanism == "rlimit":
        pytest.skip("no writable memory cgroup here (needs root on cgroup v1 or a delegated v2 subtree)")
    child = hog(tmp_path, 128 * MiB)
    sup.children = [child]
    child.start(sup.limits)
    first = ready_pid(child)
    watcher.start()

    with pytest.raises(httpx.TransportError):  # the kernel kills it mid-request
        httpx.get(child.upstream + "/grow", params={"mb": 400}, timeout=30)

    assert ready_pid(child, other_than=first) != first
    assert sup.limits.oom_kills("hog") >= 1
    bound = "memory.limit_in_bytes" if sup.limits.version == 1 else "memory.max"
    assert (sup.limits.root / "hog" / bound).read_text().strip() == str(128 * MiB)


def test_with_rlimits_an_allocation_past_the_bound_fails_and_the_process_lives_on(supervisor, tmp_path):
    sup, _ = supervisor
    child = hog(tmp_path, 256 * MiB)
    sup.children = [child]
    child.start(sup.limits)  # the supervisor's default: rlimits
    pid = ready_pid(child)

    refused = httpx.get(child.upstream + "/grow", params={"mb": 400}, timeout=30)
    assert (refused.status_code, refused.text) == (500, "MemoryError")
    assert httpx.get(child.upstream + "/grow", params={"mb": 32}, timeout=30).status_code == 200
    assert ready_pid(child) == pid


def test_cgroups_made_for_a_supervisor_are_removed(tmp_path):
    limits = MemoryLimits.detect(f"eolake-test-{os.getpid()}-release")
    if limits.mechanism == "rlimit":
        pytest.skip("no writable memory cgroup here")
    limits.preexec("one", 100 * MiB)
    assert (limits.root / "one").is_dir()
    limits.release()
    assert not limits.root.exists()


def test_cgroups_left_by_a_killed_supervisor_are_removed_at_the_next_start():
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = MemoryLimits.detect(f"eolake-{int(gone.stdout)}")  # as if that supervisor had been killed
    if left.mechanism == "rlimit":
        pytest.skip("no writable memory cgroup here")
    left.preexec("catalog", 100 * MiB)
    ours = MemoryLimits.detect(f"eolake-test-{os.getpid()}-stale")
    try:
        assert not left.root.exists()
    finally:
        ours.release()


def test_the_spec_bound_is_every_target_s(tmp_path):
    platform = load_stack("local")
    state = StateDir(tmp_path)
    Broker(state.broker).prepare()  # as `up` does before the services: the events relay is given the broker's URL
    children = {c.name: c for c in service_children(platform, state, "postgresql://u:p@h/db")}
    for name, service in platform.enabled_services.items():
        assert children[name].memory_limit == service.resources.memory_limit_bytes
    assert children["downloads-worker"].memory_limit == platform.services["downloads"].resources.memory_limit_bytes
    assert platform.services["catalog"].resources.memory_limit_bytes == 2**30  # the default: 1Gi


def test_a_memory_limit_no_service_can_run_in_is_refused(tmp_path):
    stack = tmp_path / "Pulumi.tiny.yaml"
    stack.write_text(
        "config:\n  eolake:platform:\n    name: tiny\n    base_url: http://127.0.0.1:8080\n"
        "    services:\n      catalog:\n        resources: {memory_limit: 500m}\n"
    )
    with pytest.raises(SpecError, match="services.catalog.resources: .*below 64Mi"):
        load_stack(stack)
