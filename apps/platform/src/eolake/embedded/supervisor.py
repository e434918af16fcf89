"""The embedded target: one supervisor process runs PostgreSQL, every enabled service and the gateway.

`eolake up` starts it in the background; SIGTERM (`eolake down`) stops the children gracefully and then
PostgreSQL. Each service process (with its workers) is held to its spec's resources.memory_limit by the kernel
(eolake.embedded.limits), so one runaway cannot take the machine.

What it watches, every half second: a child that exits is restarted with backoff; a service instance whose /healthz
does not answer the spec's `supervision.liveness_failures` times in a row (hung, e.g. stopped) is killed and
replaced, and from its first failed probe gets no new request while another instance of its service answers (it is
back in the gateway if it answers again); a PostgreSQL whose postmaster died is started again on its port. A
service runs as `replicas` instances (processes on their own ports) behind the gateway, which only sends traffic to
the instances listed in its routes file: those that became ready and still answer. SIGUSR1 (`eolake upgrade`)
replaces the instances one at a time.

The children die with the supervisor (the kernel sends them SIGTERM when it dies, even by SIGKILL), and their pids
are recorded: a new supervisor, `eolake down` or `eolake status` find any left over. PostgreSQL is the exception on
purpose: killing a database is worse than keeping it; it is stopped by `down`, or adopted by the next `up`.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from eolake.embedded import processes
from eolake.embedded.backup import BackupError, Backups, Schedule
from eolake.embedded.broker import Broker, BrokerError
from eolake.embedded.environment import (
    StartError,
    instance_name,
    otlp_endpoint,
    posted_reads,
    sends_staged_files,
    service_env,
    write_routes,
)
from eolake.embedded.leftovers import record_children, stop_leftovers
from eolake.embedded.limits import MemoryLimits
from eolake.embedded.monitoring import (
    ALERTMANAGER,
    PROMETHEUS,
    Monitoring,
    MonitoringError,
    monitoring_components,
    plan_monitoring,
)
from eolake.embedded.postgres import PostgresCluster, PostgresError, free_port
from eolake.embedded.replica import StreamingReplica
from eolake.embedded.seed import ensure_api_keys, load_demo, load_thesauri
from eolake.embedded.state import ROUTES_RELOAD_SECONDS, StateDir
from eolake_kit.logs import configure_logging
from eolake_spec import Platform, load_stack
from eolake_spec.platform import Supervision

if TYPE_CHECKING:
    from eolake.demo import OfflineDemo

log = logging.getLogger("eolake.supervisor")
READY_TIMEOUT = 300.0  # a first start on a busy 2-core machine (GDAL, the thesaurus index) can take minutes
STOP_TIMEOUT = 30.0
READY_POLL_SECONDS = 0.1  # a refused connection costs next to nothing: the start ends soon after the last is ready
BACKUP_CHECK_SECONDS = 300.0  # how often the schedule looks whether a base backup is due
GATEWAY_MEMORY_LIMIT = 512 * 2**20  # the embedded gateway only streams: it holds no body or answer whole
WATCH_SECONDS = 0.5
DATABASE_GRACE_SECONDS = 2.0  # a postmaster stopped that long is not being restarted (pg_ctl restart)
REPLICA_RETRY_SECONDS = 10.0  # between two starts of a read replica that is gone
DRAIN_SECONDS = 5 * ROUTES_RELOAD_SECONDS  # the gateway has stopped sending new requests to an instance taken out
TRACE_STORE = "trace-store"
BROKER = "rabbitmq"
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    upstream: str
    probe: str = "/readyz"  # readiness path under upstream
    memory_limit: int | None = None  # bytes, for the process and the processes it starts
    service: str | None = None  # the spec's service it is an instance of: behind the gateway
    liveness: str | None = None  # probed while it serves: failing too many times in a row, it is replaced
    process: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)
    state: str = "starting"  # starting → serving; down (waiting for restart_at); draining, when replaced
    restart_at: float = 0.0
    failures: int = 0  # liveness probes failed in a row
    probed_at: float = 0.0
    pending: Future | None = None  # the probe under way
    renew: Callable[[str], Child] | None = None  # a new one of the same (another port), of a given release
    cgroup: str = ""  # its memory cgroup's name: the child's name, unless an old one of the same name still runs

    def start(self, limits: MemoryLimits) -> None:
        bound = limits.preexec(self.cgroup or self.name, self.memory_limit) if self.memory_limit else None
        supervisor = os.getpid()

        def prepare() -> None:
            # Die with the supervisor (the thread that starts children is its main thread, which lives as long).
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != supervisor:  # it died before the line above
                os._exit(1)
            if bound:
                bound()

        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=prepare,
                start_new_session=True,
            )
        self.state, self.failures, self.probed_at, self.pending = "starting", 0, 0.0, None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.process:
            processes.stop(self.process, timeout)
        self._end_group()

    def kill(self) -> None:
        """SIGKILL, at once (a hung process does not handle SIGTERM), with whatever it started."""
        if self.running:
            self.process.kill()
            self.process.wait()
        self._end_group()

    def _end_group(self) -> None:
        if self.process:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own workers, if any outlived it
            except (ProcessLookupError, PermissionError):
                pass


def trace_store_child(state: StateDir) -> Child:
    port = free_port()
    return Child(
        TRACE_STORE,
        [sys.executable, "-m", "eolake.embedded.traces", f"--port={port}"],
        {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ", "PYTHONPATH")},
        state.logs / f"{TRACE_STORE}.log",
        f"http://127.0.0.1:{port}",
        "/healthz",
        liveness="/healthz",
    )


def broker_children(platform: Platform, state: StateDir) -> list[Child]:
    """eolake's own RabbitMQ, when the events service runs and the stack wants it embedded."""
    if "events" not in platform.enabled_services or platform.events.broker != "embedded":
        return []
    broker = Broker(state.broker)
    try:
        ports = broker.prepare(platform.events.port)
    except BrokerError as exc:
        raise StartError(str(exc)) from exc
    return [
        Child(
            BROKER,
            broker.command(),
            broker.env(ports),
            state.logs / f"{BROKER}.log",
            f"http://127.0.0.1:{ports.metrics}",
            "/metrics",
        )
    ]


def service_instance(
    platform: Platform,
    state: StateDir,
    dsn: str,
    name: str,
    index: int,
    gateway: str,
    release: str,
    observers: dict[str, str] | None = None,
) -> Child:
    """One instance of a service, on a port of its own."""
    m, port = platform.manifest(name), free_port()
    env = {
        **service_env(platform, state, dsn, name, gateway, release, observers),
        m.env_prefix + "HOST": "127.0.0.1",
        m.env_prefix + "PORT": str(port),
    }
    instance = instance_name(name, index)
    return Child(
        instance,
        [sys.executable, "-m", m.module],
        env,
        state.logs / f"{instance}.log",
        f"http://127.0.0.1:{port}",
        m.readiness,
        platform.services[name].resources.memory_limit_bytes,
        service=name,
        liveness="/healthz",
        renew=partial(service_instance, platform, state, dsn, name, index, gateway, observers=observers),
    )


def worker_child(
    platform: Platform,
    state: StateDir,
    dsn: str,
    name: str,
    index: int,
    gateway: str,
    release: str,
    observers: dict[str, str] | None = None,
) -> Child:
    m, metrics_port = platform.manifest(name), free_port()
    env = {
        **service_env(platform, state, dsn, name, gateway, release, observers),
        m.env_prefix + "WORKER_METRICS_PORT": str(metrics_port),
    }
    suffix = "" if index == 1 else f"-{index}"
    return Child(
        f"{name}-worker{suffix}",
        [sys.executable, "-m", m.worker.module],
        env,
        state.logs / f"{name}-worker{suffix}.log",
        f"http://127.0.0.1:{metrics_port}",
        m.worker.readiness,
        platform.services[name].resources.memory_limit_bytes,  # per replica, workers included
        liveness="/healthz",
        renew=partial(worker_child, platform, state, dsn, name, index, gateway, observers=observers),
    )


def service_children(
    platform: Platform,
    state: StateDir,
    dsn: str,
    gateway: str | None = None,
    release: str | None = None,
    observers: dict[str, str] | None = None,
    database: bool | None = None,
) -> list[Child]:
    """Every instance (`replicas`) of every enabled service, and their job workers; `gateway`: its loopback address
    (default: at the base URL's port), `release`: the label they show (default: the installed version),
    `observers`: where Prometheus, Alertmanager and the trace store run (name → URL); `database`: only the services
    that use the database (True) or only the others (False)."""
    gateway = gateway or f"http://127.0.0.1:{platform.base_url.port or 80}"
    release = release or package_version()
    children = []
    for name, service in platform.enabled_services.items():
        m = platform.manifest(name)
        if database is not None and m.database != database:
            continue
        if importlib.util.find_spec(m.module) is None:
            raise StartError(f"service {name!r} is enabled in the stack but its package is not installed")
        children += [
            service_instance(platform, state, dsn, name, i, gateway, release, observers)
            for i in range(1, service.replicas + 1)
        ]
        if m.worker:
            children += [
                worker_child(platform, state, dsn, name, i, gateway, release, observers)
                for i in range(1, service.worker_replicas + 1)
            ]
    return children


def scrape_groups(children: list[Child]) -> dict[str, list[str]]:
    """The metrics addresses of the instances of each service (each worker on its own, by name)."""
    groups: dict[str, list[str]] = {}
    for child in children:
        groups.setdefault(child.service or child.name, []).append(child.upstream)
    return groups


def gateway_routes(platform: Platform, children: list[Child]) -> dict[str, list[str]]:
    """Each service's path prefix → the instances that serve (ready once, and answering since). One whose last
    liveness probe failed is left out while another of its service answered its own: a hung instance would hold
    every request sent to it until it is killed."""
    routes: dict[str, list[str]] = {}
    for name in platform.enabled_services:
        serving = [c for c in children if c.service == name and c.state == "serving"]
        answering = [c for c in serving if not c.failures]
        routes[platform.services[name].path] = [c.upstream for c in answering or serving]
    return routes


def first_routes(platform: Platform, children: list[Child]) -> dict[str, list[str]]:
    """The gateway's routes at start: every instance, whether it answers yet or not (none gets traffic before the
    platform is ready)."""
    return {
        platform.services[name].path: [c.upstream for c in children if c.service == name]
        for name in platform.enabled_services
    }


def hung_detection_bound(supervision: Supervision) -> float:
    """The longest a hung instance goes on being sent requests before it is killed: up to a period until its next
    probe, then `liveness_failures` probes, each waiting out its timeout, seen at a tick, the next sent at the tick
    after (or a period later)."""
    period, timeout = supervision.liveness_period_seconds, supervision.liveness_timeout_seconds
    return period + supervision.liveness_failures * max(period, timeout + 2 * WATCH_SECONDS)


def gateway_child(platform: Platform, state: StateDir, port: int, observers: dict[str, str] | None = None) -> Child:
    env = {
        **os.environ,
        "EOLAKE_GATEWAY_ROUTES_FILE": str(state.routes_file),
        "EOLAKE_GATEWAY_PORT": str(port),
        "EOLAKE_GATEWAY_PUBLIC_URL": str(platform.base_url),
        "EOLAKE_GATEWAY_LIMITS": platform.edge_limits().model_dump_json(),
        "EOLAKE_GATEWAY_POSTED_READS": json.dumps(posted_reads(platform)),
    }
    if sends_staged_files(platform):
        env["EOLAKE_GATEWAY_SENDFILE_ROOTS"] = json.dumps([str(state.storage)])
    if endpoint := otlp_endpoint(platform, observers or {}):
        env["EOLAKE_GATEWAY_OTLP_ENDPOINT"] = endpoint
        env["EOLAKE_GATEWAY_TRACE_SAMPLE_RATIO"] = str(platform.observability.trace_sample_ratio)
    return Child(
        "gateway",
        [sys.executable, "-m", "eolake.embedded.gateway"],
        env,
        state.logs / "gateway.log",
        f"http://127.0.0.1:{port}",
        "/-/readyz",
        memory_limit=GATEWAY_MEMORY_LIMIT,
        liveness="/-/healthz",
    )


def wait_ready(children: list[Child], deadline: float) -> None:
    pending = {c.name: c for c in children}
    with httpx.Client(timeout=2) as client:
        while pending:
            for name, child in list(pending.items()):
                if child.process and child.process.poll() is not None:
                    raise StartError(f"{name} exited with code {child.process.returncode}: see {child.log_path}")
                if processes.answers(child.upstream + child.probe, processes.ok, client):
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise StartError(f"not ready after {READY_TIMEOUT:.0f} s: {', '.join(pending)}")
            time.sleep(READY_POLL_SECONDS)


def package_version() -> str:
    from importlib.metadata import version

    return version("eolake")


class Supervisor:
    def __init__(self, platform: Platform, state: StateDir, stack: str):
        self.platform, self.state, self.stack = platform, state, stack
        self.stopping = False
        self.upgrade_requested = False
        self.children: list[Child] = []
        self.cluster = PostgresCluster(state.postgres)
        self.replica = StreamingReplica(state.replica, self.cluster) if platform.database.replica else None
        self.replica_retry_at = 0.0
        self.monitoring = Monitoring()
        self.limits = MemoryLimits()
        self.backups, self.schedule = self._backups()
        self.release = os.environ.get("EOLAKE_RELEASE") or self._last_release() or package_version()
        self.upgrade: dict = {}
        self.status = "starting"
        self.published: dict[str, list[str]] | None = None
        self.recorded: list[tuple] = []  # each child's name, pid and state, as runtime.json last showed them
        self.database_gone_at: float | None = None
        self.database_started = False  # watched from then on
        self.probes = ThreadPoolExecutor(max_workers=4, thread_name_prefix="probe")
        self.http = httpx.Client(timeout=platform.supervision.liveness_timeout_seconds)

    def _last_release(self) -> str | None:
        """The label the last upgrade gave, kept across restarts."""
        try:
            return (self.state.root / "release").read_text().strip() or None
        except FileNotFoundError:
            return None

    def _backups(self) -> tuple[Backups | None, Schedule | None]:
        wanted = self.platform.database.backups
        if not wanted.enabled:
            return None, None
        backups = Backups(self.cluster, self.state.backups, retention_full=wanted.retention_full)
        if not backups.available:
            log.warning("backups off: pgBackRest is not installed (apt-get install pgbackrest)")
            return None, None
        return backups, Schedule(backups, wanted.every_hours, wanted.full_every)

    def _runtime(self, status: str | None = None, **extra) -> None:
        self.status = status or self.status
        self.state.write_runtime(
            {
                "status": self.status,
                "pid": os.getpid(),
                "stack": self.stack,
                "base_url": str(self.platform.base_url),
                "release": self.release,
                "database_port": self.cluster.port if self.cluster.port_file.exists() else None,
                "services": {
                    c.name: {
                        "upstream": c.upstream,
                        "pid": c.process.pid if c.process else None,
                        "state": c.state,
                        "service": c.service,
                        "probe": c.probe,
                        "url": self.platform.public_url(c.service) if c.service else None,
                        "memory_limit": c.memory_limit,
                    }
                    for c in self.children
                },
                "memory_bound": self.limits.mechanism,
                "backups": str(self.backups.root) if self.backups else None,
                "monitoring": {
                    **{name: {"url": None, "note": note} for name, note in self.monitoring.notes.items()},
                    **{
                        c.name: {"url": c.url, "probe": c.probe}
                        for c in self.monitoring.components
                        if c.name in (PROMETHEUS, ALERTMANAGER)
                    },
                    **{c.name: {"url": c.upstream, "probe": c.probe} for c in self.children if c.name == TRACE_STORE},
                },
                "broker": Broker(self.state.broker).describe()
                if any(c.name == BROKER for c in self.children)
                else None,
                "upgrade": self.upgrade,
                **extra,
            }
        )

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def _on_upgrade(self, signum, frame) -> None:
        self.upgrade_requested = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGUSR1, self._on_upgrade)
        if stopped := stop_leftovers(self.state):
            log.warning("stopped what a previous supervisor left running: %s", ", ".join(stopped))
        self.state.pid_file.write_text(str(os.getpid()))
        try:
            self._runtime("starting")
            self._start()
            self._runtime("ready")
            log.info("platform ready", extra={"base_url": str(self.platform.base_url), "release": self.release})
            self.watch()
            return 0
        except (StartError, PostgresError) as exc:
            log.error("start failed: %s", exc)
            self._runtime("failed", error=str(exc))
            return 1
        finally:
            self._stop()

    def _offline_demo(self) -> OfflineDemo | None:
        """The demo's offline part: with an offline tier and the download service that retrieves from it."""
        from eolake.demo import OfflineDemo

        offline = self.platform.storage.offline_dir(self.state.storage)
        if offline is None or "downloads" not in self.platform.enabled_services:
            return None
        # A path: the catalog resolves it against its own public URL, the one base URL every service shares.
        href = self.platform.services["downloads"].path.rstrip("/") + "/retrievals"
        return OfflineDemo(offline / "demo" / "hydrology", href)

    def _start(self) -> None:
        """Each component as soon as what it needs is there: the broker and the trace store need nothing and start
        first (the broker is the slowest to answer), then the services that use no database (once the API keys are
        there); PostgreSQL meanwhile, the migrations (skipped when nothing changed) and the demo data (first start),
        then the services that use it and the thesaurus (once its index is there); the backups' configuration, the
        gateway and the monitoring last (nothing waits for them, and pgBackRest's check of the cluster takes a
        while)."""
        try:
            plan = plan_monitoring(self.platform)
        except MonitoringError as exc:
            raise StartError(str(exc)) from exc
        # No OTLP endpoint in the stack: the spans go to a local trace store, which the console reads.
        traces = [] if self.platform.observability.otlp_endpoint else [trace_store_child(self.state)]
        brokers = broker_children(self.platform, self.state)  # before the services: their environment names it
        self.limits = MemoryLimits.detect(f"eolake-{os.getpid()}")
        log.info("memory bounds by %s", self.limits.mechanism)
        self._launch([*brokers, *traces])
        log.info("broker and trace store started", extra={"phase": "independent children started"})
        observers = plan.observers() | ({"traces": traces[0].upstream} if traces else {})
        ensure_api_keys(self.state)
        without_database = service_children(
            self.platform, self.state, "", release=self.release, observers=observers, database=False
        )
        # The thesaurus reads an index that a first start fills (GEMET: seconds): it waits, PostgreSQL does not.
        thesaurus = [c for c in without_database if c.service == "thesaurus"]
        self._launch([c for c in without_database if c not in thesaurus])
        log.info("services without a database started", extra={"phase": "services without a database started"})
        self._prepare_database()
        if thesaurus:
            load_thesauri(self.state)
        with_database = service_children(
            self.platform, self.state, self.cluster.app_dsn(), release=self.release, observers=observers, database=True
        )
        self._launch([*with_database, *thesaurus])
        log.info("services with a database started", extra={"phase": "services with a database started"})
        backup_metrics = self._prepare_backups()
        services = without_database + with_database
        write_routes(self.state, first_routes(self.platform, services))
        gateway = gateway_child(self.platform, self.state, self.platform.base_url.port or 80, observers)
        try:
            self.monitoring = monitoring_components(
                self.platform,
                self.state,
                scrape_groups(services),
                gateway.upstream,
                self.cluster.dsn(),
                backup_metrics,
                plan=plan,
            )
        except MonitoringError as exc:
            raise StartError(str(exc)) from exc
        observing = [
            Child(m.name, m.command, m.env, self.state.logs / f"{m.name}.log", m.url, m.probe)
            for m in self.monitoring.components
        ]
        self._launch([gateway, *observing])  # stopped in the reverse order of self.children
        log.info("every child started", extra={"phase": "all children started"})
        self._runtime("starting")
        wait_ready(self.children, time.monotonic() + READY_TIMEOUT)
        for child in self.children:
            child.state = "serving"
        self._publish()

    def _launch(self, children: list[Child]) -> None:
        self.children += children
        for child in children:
            child.start(self.limits)
        record_children(self.state, self.children)

    def _prepare_database(self) -> None:
        """PostgreSQL started, migrated when something changed, the demo catalog loaded on the first start."""
        # port None: the port of last time if free, else a free one
        self.cluster.start(self.platform.database.port, self._database_settings())
        self.database_started = True
        log.info("database started", extra={"phase": "database started"})
        migrated = self.cluster.migrate_when_changed()
        log.info(
            "migrations applied" if migrated else "migrations unchanged, skipped", extra={"phase": "database migrated"}
        )
        self.cluster.bound_app_role(self.platform.limits.postgres_options())
        if self.replica:  # after the migrations: it starts from a base backup of the migrated database
            self.replica.start(self.platform.database.replica.port, self._replica_settings())
            log.info("read replica started", extra={"phase": "replica started"})
        if not self.state.demo_marker.exists():
            load_demo(self.state.storage, self.cluster.dsn(), self.state.demo_marker, self._offline_demo())
        log.info("demo data in place", extra={"phase": "demo data checked"})

    def _replica_settings(self) -> dict[str, str]:
        """The primary's settings without its WAL archiving: a hot standby needs max_connections and the worker
        settings at least as high as the primary's."""
        from eolake.embedded.postgres import machine

        return self.platform.database.server_settings(machine())

    def _database_settings(self) -> dict[str, str]:
        """The spec's database settings for this machine's share (eolake_spec.tuning), WAL archiving's if backed up."""
        from eolake.embedded.postgres import machine

        archive = self.backups.archive_settings() if self.backups else {}
        return {**self.platform.database.server_settings(machine()), **archive}

    def _prepare_backups(self) -> str | None:
        """Configure pgBackRest for this start; returns its metrics address, None without backups."""
        if not self.backups:
            return None
        try:
            self.backups.configure()
            self.backups.ensure_stanza()
        except BackupError as exc:  # the platform runs; the backup alerts say what is wrong
            log.error("backups not configured: %s", exc)
        return self.schedule.serve_metrics()

    def _backup_loop(self) -> None:
        while not self.stopping:
            self.schedule.tick()
            deadline = time.monotonic() + BACKUP_CHECK_SECONDS
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.5)

    def watch(self) -> None:
        """Supervise until told to stop; upgrade when asked."""
        if self.schedule:
            threading.Thread(target=self._backup_loop, name="backups", daemon=True).start()
        while not self.stopping:
            self.tick()
            if self.upgrade_requested:
                self.upgrade_requested = False
                self._upgrade()
            time.sleep(WATCH_SECONDS)

    # --- one look at everything ---------------------------------------------------------------------------------

    def tick(self) -> None:
        self._watch_database()
        self._watch_replica()
        now = time.monotonic()
        for child in self.children:
            if self.stopping or child.state == "draining":
                continue
            if child.state != "down" and not child.running:
                self._down(child, f"exited with code {child.process.returncode}")
            elif child.state == "down" and now >= child.restart_at:
                log.info("restarting %s", child.name)
                child.start(self.limits)
                record_children(self.state, self.children)
            elif child.state == "starting" and self._probe(child, child.probe, now, WATCH_SECONDS):
                child.state = "serving"
                log.info("%s is ready again", child.name)
            elif child.state == "serving" and child.liveness:
                self._check_liveness(child, now)
        self._publish()

    def _probe(self, child: Child, path: str, now: float, every: float) -> bool | None:
        """The answer of the probe under way (True: 200) once it is in; None while it runs or is not due."""
        if child.pending is not None:
            if not child.pending.done():
                return None
            answered, child.pending = child.pending.result(), None
            return answered
        if now - child.probed_at >= every:
            child.probed_at = now
            child.pending = self.probes.submit(self._answers, child.upstream + path)
        return None

    def _answers(self, url: str) -> bool:
        return processes.answers(url, processes.ok, self.http)

    def _check_liveness(self, child: Child, now: float) -> None:
        watch = self.platform.supervision
        answered = self._probe(child, child.liveness, now, watch.liveness_period_seconds)
        if answered is None:
            return
        child.failures = 0 if answered else child.failures + 1
        if child.failures >= watch.liveness_failures:
            child.kill()
            self._down(
                child,
                f"hung: {child.liveness} did not answer within {watch.liveness_timeout_seconds:g} s "
                f"{watch.liveness_failures} times in a row; killed",
            )

    def _down(self, child: Child, why: str) -> None:
        """Out of the gateway at once; started again after a backoff that grows with its restarts."""
        child.kill()  # its process group too; a no-op for a process that exited
        now = time.monotonic()
        child.restarts = [t for t in child.restarts if now - t < 60] + [now]
        child.state, child.restart_at = "down", now + min(2 ** (len(child.restarts) - 1), 30) * 0.5
        log.warning(
            "%s %s; restarting",
            child.name,
            why,
            extra={
                "restarts_last_minute": len(child.restarts),
                "memory_limit": child.memory_limit,
                "oom_kills": self.limits.oom_kills(child.name),
            },
        )
        self._publish()

    def _publish(self) -> None:
        """The serving instances to the gateway, and every instance to Prometheus, when they changed."""
        routes = gateway_routes(self.platform, self.children)
        if routes != self.published:
            write_routes(self.state, routes)
            self.published = routes
        states = [(c.name, c.process.pid if c.process else None, c.state) for c in self.children]
        if states != self.recorded:  # `status` and the drills read them there
            self.recorded = states
            self._runtime()
        instances = scrape_groups([c for c in self.children if c.renew and c.state != "draining"])
        if self.monitoring.rescrape(instances):
            prometheus = next((c for c in self.children if c.name == PROMETHEUS and c.running), None)
            if prometheus:
                prometheus.process.send_signal(signal.SIGHUP)

    def _watch_replica(self) -> None:
        """The read replica gone: started again on its port (the services read from the primary meanwhile)."""
        if not self.replica or not self.database_started or self.replica.postmaster() == "running":
            return
        if time.monotonic() < self.replica_retry_at:
            return
        log.warning("the read replica's postmaster is gone: starting it again")
        self.replica_retry_at = time.monotonic() + REPLICA_RETRY_SECONDS
        try:
            self.replica.start(self.replica.port, self._replica_settings())
        except PostgresError as exc:
            log.error("read replica not restarted (tried again in %s s): %s", REPLICA_RETRY_SECONDS, exc)

    def _watch_database(self) -> None:
        """PostgreSQL's postmaster killed, or stopped for DATABASE_GRACE_SECONDS (longer than a restart): start it
        again."""
        postmaster = self.cluster.postmaster() if self.database_started else "running"
        if postmaster == "running":
            if self.database_gone_at is not None:
                log.info("PostgreSQL answers again")
            self.database_gone_at = None
            return
        now = time.monotonic()
        if self.database_gone_at is None:
            self.database_gone_at = now
            log.warning("PostgreSQL's postmaster is gone (%s)", postmaster)
        if postmaster == "stopped" and now - self.database_gone_at < DATABASE_GRACE_SECONDS:
            return
        try:
            self.cluster.start(self.cluster.port, self._database_settings())  # its port: the services' DSN has it
        except PostgresError as exc:
            log.error("PostgreSQL not restarted (tried again shortly): %s", exc)
            return
        log.warning("PostgreSQL restarted", extra={"down_seconds": round(time.monotonic() - self.database_gone_at, 1)})
        self.database_gone_at = None

    # --- rolling upgrade ----------------------------------------------------------------------------------------

    def _upgrade(self) -> None:
        """Migrate once (only what the running version tolerates), then replace each instance and worker in turn:
        start the new one, wait until it is ready, add it to the gateway, take the old one out, let it drain, stop
        it."""
        try:
            request = json.loads(self.state.upgrade_file.read_text())
        except (FileNotFoundError, ValueError):
            request = {}
        release = request.get("release") or package_version()
        started = time.monotonic()
        self.upgrade = {"id": request.get("id"), "status": "running", "from": self.release, "release": release}
        self._runtime("upgrading")
        log.info("upgrade to %s", release)
        try:
            self.upgrade["pgstac"] = self.cluster.migrate_rolling()
            self.release = release
            for old in [c for c in self.children if c.renew]:
                self._replace(old)
        except (StartError, PostgresError) as exc:
            log.error("upgrade stopped: %s", exc)
            self.upgrade |= {"status": "failed", "error": str(exc)}
        else:
            self.upgrade["status"] = "done"
            (self.state.root / "release").write_text(self.release + "\n")
        self.upgrade["seconds"] = round(time.monotonic() - started, 1)
        self._runtime("ready")

    def _replace(self, old: Child) -> None:
        new = old.renew(self.release)
        new.cgroup = f"{new.name}@{new.upstream.rsplit(':', 1)[1]}"  # both run a while: each its own bound
        new.start(self.limits)
        self.children.insert(self.children.index(old) + 1, new)
        record_children(self.state, self.children)
        self._wait_serving(new)
        old.state = "draining"
        self._publish()
        self._idle(DRAIN_SECONDS)  # the gateway looks at its routes every RELOAD_SECONDS
        old.stop()  # graceful: what it still serves is finished first
        self.children.remove(old)
        record_children(self.state, self.children)
        log.info("%s replaced", old.name, extra={"release": self.release})

    def _wait_serving(self, child: Child) -> None:
        """Until the new child is ready (then it serves), watching everything else meanwhile."""
        deadline = time.monotonic() + READY_TIMEOUT
        while child.state != "serving":
            if child.state == "down" or time.monotonic() > deadline or self.stopping:
                child.kill()
                self.children.remove(child)
                record_children(self.state, self.children)
                raise StartError(f"the new {child.name} did not become ready: see {child.log_path}")
            self.tick()
            time.sleep(0.1)

    def _idle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stopping:
            self.tick()
            time.sleep(0.1)

    def _stop(self) -> None:
        # Monitoring and the gateway first so no new requests arrive, then services (graceful), then the
        # database. One failure must not leave the others running.
        steps = [(f"stopping {c.name}", c.stop) for c in reversed(self.children)]
        steps += [
            ("removing the memory cgroups", self.limits.release),
            *([("stopping the read replica", self.replica.stop)] if self.replica else []),
            ("stopping PostgreSQL", self.cluster.stop),
            ("recording the stop", lambda: self._runtime("stopped")),
        ]
        for what, step in [("recording the stop", lambda: self._runtime("stopping")), *steps]:
            try:
                step()
            except Exception:
                log.exception("%s failed", what)
        self.probes.shutdown(wait=False, cancel_futures=True)
        self.state.children_file.unlink(missing_ok=True)
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
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per probe
    platform = load_stack(args.stack)
    if args.port:
        platform = platform.model_copy(update={"base_url": f"{platform.base_url.scheme}://127.0.0.1:{args.port}"})
        platform = Platform.model_validate(platform.model_dump(mode="json"))
    return Supervisor(platform, state, args.stack).run()


if __name__ == "__main__":
    sys.exit(main())
