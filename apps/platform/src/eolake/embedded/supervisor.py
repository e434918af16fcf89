"""The embedded target: one supervisor process runs PostgreSQL, every enabled service and the gateway.

`eolake up` starts it in the background; SIGTERM (`eolake down`) stops the children gracefully and then
PostgreSQL. A crashed service is restarted with backoff.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from eolake.embedded.monitoring import ALERTMANAGER, PROMETHEUS, Monitoring, MonitoringError, monitoring_components
from eolake.embedded.postgres import PostgresCluster, free_port
from eolake.embedded.state import StateDir
from eolake.paths import SHARED_DATA
from eolake_kit.auth import create_api_key
from eolake_kit.logs import configure_logging
from eolake_spec import Platform, load_stack

log = logging.getLogger("eolake.supervisor")
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


class StartError(RuntimeError):
    pass


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    upstream: str
    probe: str = "/readyz"  # readiness path under upstream
    process: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def ensure_api_keys(state: StateDir) -> None:
    """A local admin key and a demo user key, created once, kept (0600) in the state directory only."""
    for role, name in (("admin", "local-admin"), ("user", "demo-user")):
        key_file = state.key_file(role)
        if not key_file.exists():
            key = create_api_key(state.api_keys, name, role)
            key_file.touch(mode=0o600)
            key_file.write_text(key + "\n")


def load_demo(storage: Path, dsn: str, marker: Path) -> None:
    """The generated hydrology (files under `storage`) and the sample catalog, into the database; `marker` records
    it was done."""
    from eolake.demo import generate_hydrology
    from eolake.ingest import ingest

    sources = generate_hydrology(storage / "demo" / "hydrology")
    collections, naip = SHARED_DATA / "stac/pc-collections/collections.ndjson", SHARED_DATA / "stac/naip/items.ndjson"
    if collections.exists() and naip.exists():
        sources = [collections, *sources, naip]
    else:
        log.warning("sample data not found at %s: loading the generated hydrology demo only", SHARED_DATA)
    report = ingest(sources, dsn)
    log.info("demo data loaded", extra={"collections": report.collections_loaded, "items": report.items_loaded,
                                        "rejected": len(report.rejected)})
    marker.write_text(json.dumps({"collections": report.collections_loaded, "items": report.items_loaded}))


def load_thesauri(state: StateDir) -> None:
    """GEMET (en + fr) and INSPIRE themes into the thesaurus index, once: the service itself only reads it."""
    from eolake_thesaurus.demo import load_demo_vocabularies

    reports = load_demo_vocabularies(state.storage, SHARED_DATA / "thesauri")
    if reports:
        log.info("demo vocabularies loaded", extra={"vocabularies": [r.vocabulary for r in reports]})


def service_children(platform: Platform, state: StateDir, dsn: str) -> list[Child]:
    children = []
    ports = {name: free_port() for name in platform.enabled_services}
    origins = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    for name in platform.enabled_services:
        m = platform.manifest(name)
        if importlib.util.find_spec(m.module) is None:
            raise StartError(f"service {name!r} is enabled in the stack but its package is not installed")
        prefix, port = m.env_prefix, ports[name]
        env = {**os.environ, **platform.service_env(name, origins), prefix + "HOST": "127.0.0.1",
               prefix + "PORT": str(port), prefix + "AUTH__API_KEYS_FILE": str(state.api_keys),
               prefix + "STORAGE_PATH": str(state.storage)}
        if "signing" in m.secrets:
            env[prefix + "TOKEN_KEY"] = state.signing_key()
        if m.database:
            env[prefix + "DATABASE_URL"] = dsn
        children.append(Child(name, [sys.executable, "-m", m.module], env, state.logs / f"{name}.log",
                              f"http://127.0.0.1:{port}", m.readiness))
        if m.worker:
            for index in range(platform.services[name].worker_replicas):
                metrics_port = free_port()
                suffix = "" if index == 0 else f"-{index + 1}"
                children.append(Child(f"{name}-worker{suffix}", [sys.executable, "-m", m.worker.module],
                                      {**env, prefix + "WORKER_METRICS_PORT": str(metrics_port)},
                                      state.logs / f"{name}-worker{suffix}.log", f"http://127.0.0.1:{metrics_port}",
                                      "/metrics"))
    return children


def gateway_child(platform: Platform, state: StateDir, services: list[Child], port: int) -> Child:
    routes = {platform.services[c.name].path: c.upstream for c in services if c.name in platform.services}
    env = {**os.environ, "EOLAKE_GATEWAY_ROUTES": json.dumps(routes), "EOLAKE_GATEWAY_PORT": str(port),
           "EOLAKE_GATEWAY_PUBLIC_URL": str(platform.base_url)}
    if platform.observability.otlp_endpoint:
        env["EOLAKE_GATEWAY_OTLP_ENDPOINT"] = platform.observability.otlp_endpoint
    return Child("gateway", [sys.executable, "-m", "eolake.embedded.gateway"], env, state.logs / "gateway.log",
                 f"http://127.0.0.1:{port}")


def wait_ready(children: list[Child], deadline: float) -> None:
    pending = {c.name: c for c in children}
    with httpx.Client(timeout=2) as client:
        while pending:
            for name, child in list(pending.items()):
                if child.process and child.process.poll() is not None:
                    raise StartError(f"{name} exited with code {child.process.returncode}: see {child.log_path}")
                probe = "/-/readyz" if name == "gateway" else child.probe
                try:
                    if client.get(child.upstream + probe).status_code == 200:
                        del pending[name]
                except httpx.TransportError:
                    pass
            if pending and time.monotonic() > deadline:
                raise StartError(f"not ready after {READY_TIMEOUT:.0f} s: {', '.join(pending)}")
            time.sleep(0.2)


class Supervisor:
    def __init__(self, platform: Platform, state: StateDir, stack: str):
        self.platform, self.state, self.stack = platform, state, stack
        self.stopping = False
        self.children: list[Child] = []
        self.cluster = PostgresCluster(state.postgres)
        self.monitoring = Monitoring()

    def _runtime(self, status: str, **extra) -> None:
        self.state.write_runtime({
            "status": status, "pid": os.getpid(), "stack": self.stack, "base_url": str(self.platform.base_url),
            "database_port": self.cluster.port if self.cluster.running else None,
            "services": {c.name: {"upstream": c.upstream, "pid": c.process.pid if c.process else None,
                                  "url": self.platform.public_url(c.name) if c.name in self.platform.services
                                  else None}
                         for c in self.children},
            "monitoring": {**{name: {"url": None, "note": note} for name, note in self.monitoring.notes.items()},
                           **{c.name: {"url": c.url, "probe": c.probe} for c in self.monitoring.components
                              if c.name in (PROMETHEUS, ALERTMANAGER)}},
            **extra})

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.state.pid_file.write_text(str(os.getpid()))
        try:
            self._runtime("starting")
            self._start()
            self._runtime("ready")
            log.info("platform ready", extra={"base_url": str(self.platform.base_url)})
            self._watch()
            return 0
        except StartError as exc:
            log.error("start failed: %s", exc)
            self._runtime("failed", error=str(exc))
            return 1
        finally:
            self._stop()

    def _start(self) -> None:
        self.cluster.start()
        self.cluster.migrate()
        ensure_api_keys(self.state)
        if not self.state.demo_marker.exists():
            load_demo(self.state.storage, self.cluster.dsn(), self.state.demo_marker)
        if "thesaurus" in self.platform.enabled_services:
            load_thesauri(self.state)
        services = service_children(self.platform, self.state, self.cluster.app_dsn())
        gateway = gateway_child(self.platform, self.state, services, self.platform.base_url.port or 80)
        try:
            self.monitoring = monitoring_components(self.platform, self.state, {c.name: c.upstream for c in services},
                                                    gateway.upstream, self.cluster.dsn())
        except MonitoringError as exc:
            raise StartError(str(exc)) from exc
        self.children = [*services, gateway, *(Child(m.name, m.command, m.env, self.state.logs / f"{m.name}.log",
                                                     m.url, m.probe) for m in self.monitoring.components)]
        for child in self.children:
            child.start()
        self._runtime("starting")
        wait_ready(self.children, time.monotonic() + READY_TIMEOUT)

    def _watch(self) -> None:
        while not self.stopping:
            for child in self.children:
                if child.process and child.process.poll() is not None and not self.stopping:
                    self._restart(child)
            time.sleep(0.5)

    def _restart(self, child: Child) -> None:
        now = time.monotonic()
        child.restarts = [t for t in child.restarts if now - t < 60] + [now]
        log.warning("%s exited with code %s; restarting", child.name, child.process.returncode,
                    extra={"restarts_last_minute": len(child.restarts)})
        time.sleep(min(2 ** (len(child.restarts) - 1), 30) * 0.5)
        child.start()
        self._runtime("ready")

    def _stop(self) -> None:
        # Monitoring and the gateway first so no new requests arrive, then services (graceful), then the
        # database. One failure must not leave the others running.
        steps = [(f"stopping {c.name}", c.stop) for c in reversed(self.children)]
        steps += [("stopping PostgreSQL", self.cluster.stop), ("recording the stop", lambda: self._runtime("stopped"))]
        for what, step in [("recording the stop", lambda: self._runtime("stopping")), *steps]:
            try:
                step()
            except Exception:
                log.exception("%s failed", what)
        self.state.pid_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eolake-supervisor")
    parser.add_argument("--stack", default="local")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    state = StateDir(args.state_dir.resolve())
    state.prepare()
    configure_logging("supervisor")
    platform = load_stack(args.stack)
    if args.port:
        platform = platform.model_copy(update={"base_url": f"{platform.base_url.scheme}://127.0.0.1:{args.port}"})
        platform = Platform.model_validate(platform.model_dump(mode="json"))
    return Supervisor(platform, state, args.stack).run()


if __name__ == "__main__":
    sys.exit(main())
