"""Embedded monitoring: Prometheus (with the repository's rules), Alertmanager and the PostgreSQL exporter.

They run as supervisor children like the services, from the system's binaries (Debian packages prometheus,
prometheus-alertmanager, prometheus-postgres-exporter). Prometheus scrapes every service, the gateway, the exporter,
Alertmanager and itself, and loads monitoring/rules/*.yaml and monitoring/alerts/*.yaml by absolute path (so a
SIGHUP to Prometheus picks up edited rules; its lifecycle API stays off, so no HTTP caller can stop or reload it).
alerts/kubernetes.yaml holds alerts about pods and
nodes that cannot evaluate here, and is not loaded. The TSDB lives in the state directory and survives restarts.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from eolake.embedded.postgres import free_port, port_is_free
from eolake.embedded.state import StateDir
from eolake.paths import REPO_ROOT
from eolake_spec import Platform
from eolake_spec.alerting import alertmanager_config

log = logging.getLogger("eolake.monitoring")

MONITORING_DIR = REPO_ROOT / "monitoring"
# Alert files that only make sense on Kubernetes (kube-state-metrics, kubelet): never loaded by the embedded target.
KUBERNETES_ONLY = {"kubernetes.yaml", "kubernetes.yml"}
PROMETHEUS, ALERTMANAGER, EXPORTER, OUTBOX = "prometheus", "alertmanager", "postgres-exporter", "alert-outbox"
BINARIES = {PROMETHEUS: ("prometheus", "prometheus"),
            ALERTMANAGER: ("prometheus-alertmanager", "prometheus-alertmanager"),
            EXPORTER: ("prometheus-postgres-exporter", "prometheus-postgres-exporter")}  # name: (binary, package)


class MonitoringError(RuntimeError):
    pass


@dataclass(frozen=True)
class Target:
    """Something Prometheus scrapes: the job name, its address and metrics path, extra target labels."""

    job: str
    address: str  # host:port
    metrics_path: str = "/metrics"
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Component:
    """A monitoring process to run: the supervisor wraps it in a Child."""

    name: str
    command: list[str]
    env: dict[str, str]
    url: str
    probe: str


def find_binary(name: str) -> str | None:
    """On PATH, or in /usr/bin where the Debian packages put it (PATH may be trimmed, e.g. under sudo or cron)."""
    binary = BINARIES[name][0]
    return shutil.which(binary) or shutil.which(binary, path="/usr/bin")


def rule_files(monitoring_dir: Path = MONITORING_DIR) -> list[Path]:
    """Recording rules then alerts, sorted, absolute; the Kubernetes-only alerts left out."""
    files = []
    for folder in ("rules", "alerts"):
        found = [*(monitoring_dir / folder).glob("*.yaml"), *(monitoring_dir / folder).glob("*.yml")]
        files += sorted(p.resolve() for p in found if p.name not in KUBERNETES_ONLY)
    return files


def _address(url: str) -> str:
    return url.removeprefix("http://").removeprefix("https://").rstrip("/")


def prometheus_config(targets: list[Target], rules: list[Path], scrape_interval: int,
                      alertmanager: str | None = None) -> dict:
    """prometheus.yml as a dict: one job per target, the rules by absolute path, Alertmanager when there is one."""
    interval = f"{scrape_interval}s"
    config: dict = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": f"{min(scrape_interval, 10)}s"},
        "rule_files": [str(p) for p in rules],
        "scrape_configs": [],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    for target in targets:
        static: dict = {"targets": [target.address]}
        if target.labels:
            static["labels"] = dict(target.labels)
        job = {"job_name": target.job, "metrics_path": target.metrics_path, "static_configs": [static]}
        if target.labels:
            # The services label their own series (service="catalog"); keep those rather than renaming them
            # to exported_service. The target label still reaches `up` and the scrape's synthetic series.
            job["honor_labels"] = True
        config["scrape_configs"].append(job)
    return config


def _port(requested: int | None, what: str, field: str) -> int:
    if requested is None:
        return free_port()
    if not port_is_free(requested):
        raise MonitoringError(f"port {requested} for {what} (observability.{field}) is already in use")
    return requested


def _env(**extra: str) -> dict[str, str]:
    # A small environment: these Go programs need none of the platform's settings or secrets.
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}
    return {**base, **extra}


@dataclass
class Monitoring:
    components: list[Component] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # component name: why it does not run

    def skip(self, name: str, note: str, level: int = logging.WARNING) -> None:
        log.log(level, "%s not started: %s", name, note)
        self.notes[name] = note


def outbox_component(path: Path) -> Component:
    """The loopback webhook every receiver also posts to: `eolake alerts` reads what was (or would have been) sent."""
    port = free_port()
    return Component(OUTBOX, [sys.executable, "-m", "eolake.embedded.outbox", f"--port={port}", f"--file={path}"],
                     _env(), f"http://127.0.0.1:{port}", "/healthz")


def _not_installed(name: str) -> str:
    return f"not installed (apt-get install {BINARIES[name][1]})"


def monitoring_components(platform: Platform, state: StateDir, services: dict[str, str], gateway: str,
                          superuser_dsn: str, backups: str | None = None,
                          monitoring_dir: Path = MONITORING_DIR) -> Monitoring:
    """The exporter, Prometheus and Alertmanager to start; what does not start is logged and noted with the reason.

    `services` maps each service name to its upstream URL; `gateway` is the gateway's URL; `backups` the
    host:port of the backup schedule's metrics, when backups run.
    """
    obs = platform.observability
    result = Monitoring()
    if not obs.prometheus:
        result.skip(PROMETHEUS, "disabled in the stack (observability.prometheus: false)", logging.INFO)
        return result
    prometheus_bin = find_binary(PROMETHEUS)
    if not prometheus_bin:
        result.skip(PROMETHEUS, _not_installed(PROMETHEUS))
        return result
    components = result.components
    targets = [Target(f"eolake-{name}", _address(url), labels=(("service", name),))
               for name, url in sorted(services.items())]
    targets.append(Target("eolake-gateway", _address(gateway), "/-/metrics", labels=(("service", "gateway"),)))
    if backups:
        targets.append(Target("backup", backups))

    exporter_bin = find_binary(EXPORTER)
    if exporter_bin:
        port = free_port()
        separator = "&" if "?" in superuser_dsn else "?"
        components.append(Component(
            EXPORTER, [exporter_bin, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            _env(DATA_SOURCE_NAME=f"{superuser_dsn}{separator}sslmode=disable"),
            f"http://127.0.0.1:{port}", "/"))
        targets.append(Target("postgres", f"127.0.0.1:{port}"))
    else:
        result.skip(EXPORTER, _not_installed(EXPORTER) + ": no database metrics")

    alertmanager_address = None
    routes_file = monitoring_dir / "alertmanager" / "alertmanager.yml"
    alertmanager_bin = find_binary(ALERTMANAGER)
    if obs.alertmanager and alertmanager_bin and routes_file.is_file():
        port = _port(obs.alertmanager_port, "Alertmanager", "alertmanager_port")
        alertmanager_address = f"127.0.0.1:{port}"
        storage = state.root / "alertmanager"
        storage.mkdir(parents=True, exist_ok=True)
        outbox = outbox_component(storage / "outbox.jsonl")
        config_file = storage / "alertmanager.yml"
        try:
            config = alertmanager_config(yaml.safe_load(routes_file.read_text()), obs, local_webhook=outbox.url)
        except ValueError as exc:
            raise MonitoringError(f"{routes_file}: {exc}") from exc
        config_file.write_text("# Generated by `eolake up` at every start from monitoring/alertmanager/alertmanager.yml"
                               " and the stack's observability.receivers.\n" + yaml.safe_dump(config, sort_keys=False))
        components += [outbox, Component(
            ALERTMANAGER, [alertmanager_bin, f"--config.file={config_file}",
                           f"--storage.path={storage}", f"--web.listen-address={alertmanager_address}",
                           "--cluster.listen-address=", f"--web.external-url=http://{alertmanager_address}/"],
            _env(), f"http://{alertmanager_address}", "/-/ready")]
        targets.append(Target("alertmanager", alertmanager_address))
    elif not obs.alertmanager:
        result.skip(ALERTMANAGER, "disabled in the stack (observability.alertmanager: false)", logging.INFO)
    elif not alertmanager_bin:
        result.skip(ALERTMANAGER, _not_installed(ALERTMANAGER))
    else:
        result.skip(ALERTMANAGER, f"no configuration at {routes_file}")

    port = _port(obs.prometheus_port, "Prometheus", "prometheus_port")
    address = f"127.0.0.1:{port}"
    targets.append(Target("prometheus", address))
    root = state.root / "prometheus"
    (root / "data").mkdir(parents=True, exist_ok=True)
    rules = rule_files(monitoring_dir)
    config_file = root / "prometheus.yml"
    config = prometheus_config(targets, rules, obs.scrape_interval_seconds, alertmanager_address)
    config_file.write_text("# Generated by `eolake up` at every start: edit the stack or monitoring/, not this.\n"
                           + yaml.safe_dump(config, sort_keys=False))
    components.append(Component(
        PROMETHEUS, [prometheus_bin, f"--config.file={config_file}", f"--storage.tsdb.path={root / 'data'}",
                     f"--storage.tsdb.retention.time={obs.retention}",
                     f"--storage.tsdb.retention.size={obs.retention_size}", f"--web.listen-address={address}",
                     f"--web.external-url=http://{address}/",
                     # Firing alerts are re-sent this often (default 1m): the first send can miss an Alertmanager
                     # that starts at the same moment, and locally nobody should wait a minute for it.
                     f"--rules.alert.resend-delay={min(60, max(5, obs.scrape_interval_seconds))}s"],
        _env(), f"http://{address}", "/-/ready"))
    log.info("monitoring configured", extra={"prometheus": f"http://{address}", "rule_files": len(rules),
                                             "alertmanager": alertmanager_address})
    return result
