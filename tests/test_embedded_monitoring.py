"""The embedded monitoring's configuration, without starting anything: which rule files load, the scrape jobs, and
what happens when Prometheus or Alertmanager is disabled, not installed or given a busy port."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from eolake.embedded import monitoring
from eolake.embedded.monitoring import (
    ALERTMANAGER,
    EXPORTER,
    PROMETHEUS,
    MonitoringError,
    Target,
    monitoring_components,
    prometheus_config,
    rule_files,
)
from eolake.embedded.state import StateDir
from eolake_spec import load_stack

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"catalog": "http://127.0.0.1:8101"}
GATEWAY = "http://127.0.0.1:8080"
DSN = "postgresql://eolake:secret@127.0.0.1:5433/eolake"


def platform(**observability):
    base = load_stack("local")
    obs = base.observability.model_copy(update=observability)
    return base.model_copy(update={"observability": obs})


def components(tmp_path: Path, monitoring_dir: Path = monitoring.MONITORING_DIR, **observability):
    state = StateDir(tmp_path / "state")
    state.prepare()
    return monitoring_components(
        platform(**observability), state, SERVICES, GATEWAY, DSN, monitoring_dir=monitoring_dir
    )


def fake_monitoring_dir(root: Path, alertmanager: bool = True) -> Path:
    for folder, names in (("rules", ["b.yaml", "a.yml"]), ("alerts", ["platform.yaml", "kubernetes.yaml"])):
        (root / folder).mkdir(parents=True)
        for name in names:
            (root / folder / name).write_text("groups: []\n")
    if alertmanager:
        (root / "alertmanager").mkdir()
        (root / "alertmanager" / "alertmanager.yml").write_text("route: {receiver: x}\nreceivers: [{name: x}]\n")
    return root


def test_rule_files_are_recording_rules_then_alerts_without_the_kubernetes_ones(tmp_path):
    files = rule_files(fake_monitoring_dir(tmp_path))
    assert [f"{p.parent.name}/{p.name}" for p in files] == ["rules/a.yml", "rules/b.yaml", "alerts/platform.yaml"]
    assert all(p.is_absolute() for p in files)


def test_the_repository_rules_load_except_kubernetes_yaml():
    names = {p.name for p in rule_files()}
    assert "kubernetes.yaml" not in names
    assert {p.name for p in (ROOT / "monitoring" / "rules").glob("*.yaml")} <= names


def test_scrape_jobs_and_labels():
    targets = [
        Target("eolake-catalog", "127.0.0.1:1", labels=(("service", "catalog"),)),
        Target("eolake-gateway", "127.0.0.1:2", "/-/metrics", (("service", "gateway"),)),
        Target("postgres", "127.0.0.1:3"),
    ]
    config = prometheus_config(targets, [Path("/r/slo.yaml")], 2, alertmanager="127.0.0.1:4")
    assert config["global"] == {"scrape_interval": "2s", "evaluation_interval": "2s", "scrape_timeout": "2s"}
    assert config["rule_files"] == ["/r/slo.yaml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:4"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["eolake-gateway"]["metrics_path"] == "/-/metrics"
    # The services' own service label is kept (not renamed exported_service); the exporter's jobs have none.
    assert jobs["eolake-catalog"]["honor_labels"] is True
    assert jobs["eolake-catalog"]["static_configs"][0]["labels"] == {"service": "catalog"}
    assert "honor_labels" not in jobs["postgres"]
    assert "alerting" not in prometheus_config(targets, [], 15)
    assert prometheus_config(targets, [], 60)["global"]["scrape_timeout"] == "10s"


@pytest.mark.skipif(not monitoring.find_binary(PROMETHEUS), reason="Prometheus is not installed")
def test_generated_configuration_passes_promtool_with_the_repository_rules(tmp_path):
    result = components(tmp_path)
    prometheus = next(c for c in result.components if c.name == PROMETHEUS)
    config_file = next(a.split("=", 1)[1] for a in prometheus.command if a.startswith("--config.file="))
    config = yaml.safe_load(Path(config_file).read_text())
    assert {j["job_name"] for j in config["scrape_configs"]} >= {"eolake-catalog", "eolake-gateway", "prometheus"}
    if shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "config", config_file], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    assert f"--storage.tsdb.path={tmp_path / 'state' / 'prometheus' / 'data'}" in prometheus.command


@pytest.mark.skipif(not monitoring.find_binary(PROMETHEUS), reason="Prometheus is not installed")
def test_components_and_the_exporter_dsn(tmp_path, monkeypatch):
    result = components(tmp_path, fake_monitoring_dir(tmp_path / "monitoring"))
    names = [c.name for c in result.components]
    assert names[-1] == PROMETHEUS
    if monitoring.find_binary(EXPORTER):
        exporter = next(c for c in result.components if c.name == EXPORTER)
        assert exporter.env["DATA_SOURCE_NAME"] == DSN + "?sslmode=disable"
        assert not any("secret" in arg for arg in exporter.command), "the password must not show in ps"
    if monitoring.find_binary(ALERTMANAGER):
        alertmanager = next(c for c in result.components if c.name == ALERTMANAGER)
        assert "--cluster.listen-address=" in alertmanager.command
        assert alertmanager.probe == "/-/ready"
    prometheus = next(c for c in result.components if c.name == PROMETHEUS)
    assert "DATA_SOURCE_NAME" not in prometheus.env and prometheus.probe == "/-/ready"


def test_disabled_in_the_stack(tmp_path):
    result = components(tmp_path, prometheus=False)
    assert result.components == [] and "observability.prometheus: false" in result.notes[PROMETHEUS]


def test_not_installed_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(monitoring, "find_binary", lambda name: None)
    result = components(tmp_path)
    assert result.components == [] and result.notes[PROMETHEUS] == "not installed (apt-get install prometheus)"


@pytest.mark.skipif(not monitoring.find_binary(PROMETHEUS), reason="Prometheus is not installed")
def test_alertmanager_without_binary_or_configuration(tmp_path, monkeypatch):
    without_config = components(tmp_path / "a", fake_monitoring_dir(tmp_path / "m1", alertmanager=False))
    assert ALERTMANAGER not in [c.name for c in without_config.components]
    assert without_config.notes[ALERTMANAGER].startswith("no configuration at ")
    real = monitoring.find_binary
    monkeypatch.setattr(monitoring, "find_binary", lambda name: None if name == ALERTMANAGER else real(name))
    missing = components(tmp_path / "b", fake_monitoring_dir(tmp_path / "m2"))
    assert missing.notes[ALERTMANAGER] == "not installed (apt-get install prometheus-alertmanager)"
    prometheus = next(c for c in missing.components if c.name == PROMETHEUS)
    config_file = next(a.split("=", 1)[1] for a in prometheus.command if a.startswith("--config.file="))
    assert "alerting" not in yaml.safe_load(Path(config_file).read_text())
    disabled = components(tmp_path / "c", fake_monitoring_dir(tmp_path / "m3"), alertmanager=False)
    assert "observability.alertmanager: false" in disabled.notes[ALERTMANAGER]


@pytest.mark.skipif(not monitoring.find_binary(PROMETHEUS), reason="Prometheus is not installed")
def test_a_busy_prometheus_port_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(MonitoringError, match=f"port {port} for Prometheus .*prometheus_port.* in use"):
            components(tmp_path, prometheus_port=port)


@pytest.mark.skipif(not monitoring.find_binary(PROMETHEUS), reason="Prometheus is not installed")
def test_the_scrape_targets_follow_the_instances(tmp_path):
    result = components(tmp_path)
    instances = ["http://127.0.0.1:8102", "http://127.0.0.1:8103"]
    assert result.rescrape({"catalog": instances, "unknown": ["http://127.0.0.1:9"]})
    config = yaml.safe_load(result.config_file.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["eolake-catalog"]["static_configs"] == [
        {"targets": ["127.0.0.1:8102", "127.0.0.1:8103"], "labels": {"service": "catalog"}}
    ]
    assert "eolake-unknown" not in jobs
    assert not result.rescrape({"catalog": instances}), "nothing changed: no reload"
