"""Run eolake processes for tests as they run in production: real processes, real HTTP on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eolake.embedded import processes
from eolake.embedded.postgres import PostgresCluster, free_port
from eolake.embedded.processes import wait_until  # noqa: F401 (the tests import it from here)

if TYPE_CHECKING:
    from oidc import CodeFlowIssuer


@contextmanager
def private_cluster(prefix: str = "eolake-test-pg-"):
    """A migrated PostgreSQL + PostGIS + pgstac cluster in a fresh directory, removed afterwards."""
    # Not under pytest's tmp dir: that is private (0700), and as root the cluster runs as the postgres user.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = PostgresCluster(root)
    try:
        cluster.start()
        cluster.migrate()
        yield cluster
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def service_process(
    module: str,
    env: dict[str, str],
    log: Path,
    probe: str = "/healthz",
    timeout: float = 60,
    own_public_url: bool = False,
):
    """Start `python -m module` with env; yields its base URL once `probe` answers; SIGTERM at the end.

    `own_public_url`: the service's public URL is its own address, so the links it builds can be followed.
    """
    port = free_port()
    prefix = f"EOLAKE_{module.removeprefix('eolake_').upper()}_"
    full_env = {**os.environ, prefix + "PORT": str(port), prefix + "HOST": "127.0.0.1"}
    if own_public_url:
        full_env[prefix + "PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    full_env.update(env)
    url = f"http://127.0.0.1:{port}"
    with processes.serving([sys.executable, "-m", module], url, log, probe, full_env, timeout):
        yield url


@contextmanager
def served(app, lifespan: str = "on", **config):
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL. `config`: more
    uvicorn settings (proxy_headers=False, as eolake_kit.serve runs services)."""
    import socket
    import threading

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan, log_config=None, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def stub_stac(items: Path, log: Path, median_ms: float = 0, spread: float = 0, seed: int = 0):
    """A STAC API stub over `items` (ndjson) in its own process, each search answered after its delay
    (tests/stub_stac.py); yields its URL, stopped at the end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, str(Path(__file__).with_name("stub_stac.py")), str(items), "--port", str(port)]
    command += ["--median-ms", str(median_ms), "--spread", str(spread), "--seed", str(seed)]
    with processes.serving(command, url, log):
        yield url


@contextmanager
def moto_server(log: Path):
    """moto's S3 server on a free loopback port; yields its URL, stopped at the end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    moto = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with processes.serving(moto, url, log, "/moto-api/"):
        yield url


ROOT = Path(__file__).resolve().parents[1]


def local_stack(path: Path, edit: Callable[[dict], None]) -> Path:
    """stacks/Pulumi.local.yaml with `edit` applied to its platform, written to `path`."""
    import yaml

    document = yaml.safe_load((ROOT / "stacks" / "Pulumi.local.yaml").read_text())
    edit(document["config"]["eolake:platform"])
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def catalog_only_stack(path: Path, name: str) -> Path:
    """The local stack reduced to the catalog, without monitoring: the cheapest `up` that starts eolake's cluster,
    migrates it and serves from it."""

    def catalog_only(platform: dict) -> None:
        platform.update(
            name=name,
            services={"catalog": {"workers": 1, "pool_size": 2}},
            providers=[],
            priorities={},
            observability={"prometheus": False, "alertmanager": False},
        )

    return local_stack(path, catalog_only)


def signing_in_at(issuer) -> Callable[[dict], None]:
    """An edit of a stack: its users sign in at `issuer` (tests/oidc.py; the services check tokens against its JWKS),
    API keys still work."""
    from oidc import AUDIENCE

    def edit(platform: dict) -> None:
        platform["auth"] = {"oidc_issuer": issuer.issuer, "oidc_audience": AUDIENCE, "oidc_jwks_url": issuer.jwks_url}

    return edit


SCRAPE_INTERVAL = 1  # seconds, on the fast-monitoring stack


def fast_monitoring(platform: dict) -> None:
    """Scrapes and rule evaluations every second (the monitoring test waits seconds, not minutes), one catalog process
    (a single process to pause); and a streaming replica the catalog and the tiles read from
    (tests/test_replicas_embedded.py: the embedded runner's replica, end to end, at no extra boot)."""
    platform["name"] = "monitoring-e2e"
    platform["services"]["catalog"]["workers"] = 1
    platform.setdefault("observability", {})["scrape_interval_seconds"] = SCRAPE_INTERVAL
    platform.setdefault("database", {})["replica"] = {}


# The stacks of conftest's shared `platform`, by name: edits of the local stack.
STACKS: dict[str, Callable[[dict], None]] = {"local": lambda platform: None, "fast-monitoring": fast_monitoring}

UP_TIMEOUT = 420


@dataclass
class RunningPlatform:
    """The embedded platform as a user runs it, through the CLI (the `platform` fixture of conftest)."""

    root: Path
    state: Path
    port: int
    stack: Path | None = None  # None: the local stack
    issuer: CodeFlowIssuer | None = None  # the OpenID Connect provider its users sign in at, if any
    started: str = ""  # what `eolake up` printed

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def key(self, role: str) -> str:
        """The API key `eolake up` created for `role` (admin or user)."""
        return (self.state / f"{role}.key").read_text().strip()

    def env(self, state: Path | None = None) -> dict[str, str]:
        # Wide columns: rich wraps long lines at the terminal width (80 without a terminal).
        return {**os.environ, "EOLAKE_STATE_DIR": str(state or self.state), "COLUMNS": "200", "NO_COLOR": "1"}

    def cli(self, *args: str, state: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "eolake.cli", *args],
            env=self.env(state),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def up(self) -> subprocess.CompletedProcess:
        stack = ("--stack", str(self.stack)) if self.stack else ()
        result = self.cli("up", *stack, "--port", str(self.port), timeout=UP_TIMEOUT)
        assert result.returncode == 0, (
            f"eolake up failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{self.log_tail()}"
        )
        return result

    def log_tail(self, lines: int = 40, name: str = "supervisor") -> str:
        log = self.state / "logs" / f"{name}.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    def runtime(self) -> dict:
        """What the supervisor last recorded: its children, their pids and ports, the monitoring's URLs."""
        return json.loads((self.state / "runtime.json").read_text())

    def pids(self) -> dict[str, int]:
        """The running services' process ids, by name."""
        return {name: s["pid"] for name, s in self.runtime()["services"].items() if s.get("pid")}


def describe(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


@contextmanager
def embedded_platform(prefix: str, edit: Callable[[dict], None] | None = None, port: int | None = None):
    """`eolake up` in a fresh state directory, on the local stack with `edit` applied to it if given; `eolake down`
    afterwards (the directory is kept if that fails)."""
    # Not under pytest's tmp_path: that is private (0700), and as root the cluster runs as the postgres user.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    stack = local_stack(root / "Pulumi.test.yaml", edit) if edit else None
    running = RunningPlatform(root=root, state=root / "state", port=port or free_port(), stack=stack)
    try:
        running.started = running.up().stdout
        yield running
    finally:
        down = running.cli("down", timeout=180)
        if down.returncode == 0:
            shutil.rmtree(root, ignore_errors=True)
    # Only reached when the tests ran (a failed start raised above, after `down`).
    assert down.returncode == 0, f"eolake down failed; state kept in {root}\n{describe(down)}"


@contextmanager
def signed_in_platform(prefix: str, edit: Callable[[dict], None] = lambda platform: None):
    """embedded_platform() whose users sign in at a test OpenID Connect provider on loopback (`running.issuer`,
    user alice), API keys working as well."""
    from oidc import CodeFlowIssuer

    port = free_port()
    issuer = CodeFlowIssuer("eolake-web", [f"http://127.0.0.1:{port}/"], users={"alice": ["user"]})

    def signed_in(platform: dict) -> None:
        signing_in_at(issuer)(platform)
        edit(platform)

    try:
        with embedded_platform(prefix, signed_in, port) as running:
            running.issuer = issuer
            yield running
    finally:
        issuer.stop()
