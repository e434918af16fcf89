"""monitoring/: rules and alerts pass promtool, every alert is unit-tested at its edges and has a runbook, the
generated SLO files match slos.yaml, and Alertmanager's routing and inhibitions do what they say."""

from __future__ import annotations

import importlib.util
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from eolake_kit.observe import LATENCY_BUCKETS

MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
RULE_FILES = sorted([*MONITORING.glob("rules/*.yaml"), *MONITORING.glob("alerts/*.yaml")])
TEST_FILES = sorted(MONITORING.glob("tests/*.yaml"))
ALERTMANAGER_CONFIG = MONITORING / "alertmanager" / "alertmanager.yml"
RUNBOOK_SECTIONS = ("## Meaning", "## Impact", "## Diagnosis", "## Fix", "## Escalation")


def load_generator():
    spec = importlib.util.spec_from_file_location("monitoring_generate", MONITORING / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = load_generator()
SLOS = generate.load()


def binary(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/bin")
    if not path:
        pytest.fail(f"{name} not found: run ./eolake (it installs the Debian package {package})")
    return path


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def alerts() -> list[tuple[Path, dict]]:
    return [
        (path, rule)
        for path in sorted(MONITORING.glob("alerts/*.yaml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


ALERT_NAMES = sorted({rule["alert"] for _, rule in alerts()})


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_promtool_check_rules(path: Path):
    result = run(binary("promtool", "prometheus"), "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests(path: Path):
    result = run(binary("promtool", "prometheus"), "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_files_match_slos_yaml():
    stale = [
        str(path.relative_to(MONITORING.parent))
        for path, text in generate.outputs(SLOS).items()
        if not path.is_file() or path.read_text() != text
    ]
    assert not stale, f"{', '.join(stale)} differ from slos.yaml: run `python monitoring/generate.py`"


def test_generator_rejects_impossible_slos(tmp_path: Path):
    spec = yaml.safe_load((MONITORING / "slos.yaml").read_text())
    spec["slos"][0]["objective"] = 0.9  # 14.4 x 10 % budget: the fast page could never fire
    (tmp_path / "slos.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SystemExit, match="catalog-search-availability.*unreachable"):
        generate.load(tmp_path / "slos.yaml")
    spec["slos"][0]["objective"], spec["slos"][0]["sli"]["kind"] = 0.999, "http-magic"
    (tmp_path / "slos.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SystemExit, match="http-magic"):
        generate.load(tmp_path / "slos.yaml")


def test_http_latency_thresholds_are_kit_buckets():
    for slo in SLOS["slos"]:
        if slo["sli"]["kind"] == "http-latency":
            assert slo["sli"]["threshold_seconds"] in LATENCY_BUCKETS, slo["name"]


def test_every_alert_has_severity_annotations_and_runbook():
    for path, rule in alerts():
        where = f"{path.name}: {rule['alert']}"
        assert rule["labels"]["severity"] in {"page", "ticket", "none"}, where
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= annotations.keys(), where
        assert annotations["runbook_url"] == f"{SLOS['runbook_base']}{rule['alert']}.md", where
        runbook = MONITORING / "runbooks" / f"{rule['alert']}.md"
        assert runbook.is_file(), f"{where}: no runbook {runbook.relative_to(MONITORING.parent)}"
        text = runbook.read_text()
        assert text.startswith(f"# {rule['alert']}\n"), runbook.name
        assert all(section in text for section in RUNBOOK_SECTIONS), f"{runbook.name} lacks a section"


def test_every_runbook_belongs_to_an_alert():
    pages = {p.stem for p in MONITORING.glob("runbooks/*.md")} - {"README"}
    assert pages == set(ALERT_NAMES)


def test_every_alert_is_unit_tested_firing_and_not_firing():
    firing, quiet, covered_files = set(), set(), set()
    for path in TEST_FILES:
        document = yaml.safe_load(path.read_text())
        covered_files |= {(path.parent / f).resolve() for f in document["rule_files"]}
        for case in document["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert set(ALERT_NAMES) - firing == set(), "alerts never tested firing"
    assert set(ALERT_NAMES) - quiet - {"Watchdog"} == set(), "alerts never tested just before they fire"
    assert {p.resolve() for p in MONITORING.glob("alerts/*.yaml")} <= covered_files


def dashboards_generator():
    """monitoring/dashboards/generate.py, which declares the metrics only the Kubernetes target exports."""
    spec = importlib.util.spec_from_file_location("monitoring_dashboards", MONITORING / "dashboards" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_target_specific_metrics_are_in_the_right_files():
    """CloudNativePG, kubelet and kube-state-metrics exist on Kubernetes only: rules on them belong in the files the
    embedded Prometheus does not load (alerts/kubernetes.yaml), and use names those exporters export. Conversely
    postgres_exporter's pg_* do not exist on Kubernetes: a rule there on them could never fire."""
    from eolake.embedded.monitoring import rule_files as embedded_rule_files

    dashboards = dashboards_generator()
    loaded = set(embedded_rule_files(MONITORING))
    assert loaded and MONITORING / "alerts" / "kubernetes.yaml" not in loaded
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                where, expr = f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]
                kubernetes = set(dashboards.KUBERNETES_PREFIXES.findall(expr))
                assert kubernetes <= dashboards.KUBERNETES_METRICS, (where, kubernetes - dashboards.KUBERNETES_METRICS)
                if path.resolve() in loaded:
                    assert not kubernetes, f"{where} reads {kubernetes}: the embedded Prometheus loads this file"
                else:
                    assert not re.findall(r"\bpg_\w+", expr), f"{where}: postgres_exporter's metrics on Kubernetes"


def test_postgres_alerts_exist_on_both_targets():
    """Each PostgreSQL alert on postgres_exporter (embedded, on-premise) has a rule on CloudNativePG's metrics
    (Kubernetes) under the same name, severity and runbook: PostgresDown must be able to fire on every target."""
    by_file: dict[str, dict[str, dict]] = {}
    for path, rule in alerts():
        by_file.setdefault(path.name, {})[rule["alert"]] = rule
    exporter, kubernetes = by_file["postgres.yaml"], by_file["kubernetes.yaml"]
    assert {"PostgresDown", "PostgresConnectionsNearLimit", "PostgresReplicationLag"} <= set(exporter)
    for name, rule in exporter.items():
        assert name in kubernetes, f"{name} has no CloudNativePG rule in alerts/kubernetes.yaml"
        assert "cnpg_" in kubernetes[name]["expr"], name
        assert kubernetes[name]["labels"] == rule["labels"], name


def test_amtool_check_config():
    result = run(binary("amtool", "prometheus-alertmanager"), "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ("alertname=Watchdog severity=none", "heartbeat"),
        ("alertname=EolakeServiceDown severity=page service=catalog", "page"),
        ("alertname=CatalogSearchAvailabilityBudgetBurn severity=ticket service=catalog", "ticket"),
        ("alertname=SomethingNew", "ticket"),
    ],
)
def test_alertmanager_routes_by_severity(labels: str, receiver: str):
    result = run(
        binary("amtool", "prometheus-alertmanager"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        *labels.split(),
    )
    assert result.stdout.strip() == receiver, result.stdout + result.stderr


def test_inhibitions_name_existing_alerts():
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    rules = config["inhibit_rules"]
    matchers = [m for rule in rules for m in rule.get("source_matchers", []) + rule["target_matchers"]]
    for matcher in matchers:
        if found := re.fullmatch(r'alertname(?:=~|!~|!=|=)"?([^"]*)"?', matcher):
            assert set(found[1].split("|")) <= set(ALERT_NAMES), matcher


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory) -> str:
    """A real Alertmanager on loopback with monitoring/alertmanager/alertmanager.yml."""
    port = free_port()
    command = [
        binary("prometheus-alertmanager", "prometheus-alertmanager"),
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--storage.path={tmp_path_factory.mktemp('am')}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Alertmanager did not start: {process.stderr.read() if process.poll() else 'timeout'}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def key(labels: dict) -> str:
    return "/".join(labels.get(k, "-") for k in ("alertname", "service", "severity"))


def inhibited(url: str, *alerts_: dict, expect: dict[str, bool]) -> dict[str, bool]:
    """Post the alerts (labels only); {alertname/service/severity: inhibited?} once it equals `expect`, or after 5 s
    (Alertmanager's inhibitor takes new alerts in asynchronously)."""
    httpx.post(f"{url}/api/v2/alerts", json=[{"labels": labels} for labels in alerts_], timeout=5).raise_for_status()
    wanted, deadline = {key(labels) for labels in alerts_}, time.monotonic() + 5
    while True:
        found = httpx.get(f"{url}/api/v2/alerts", timeout=5).json()
        states = {key(a["labels"]): bool(a["status"]["inhibitedBy"]) for a in found if key(a["labels"]) in wanted}
        if states == expect or time.monotonic() > deadline:
            return states
        time.sleep(0.05)


def test_inhibitions_in_a_real_alertmanager(alertmanager: str):
    # A service down holds back that service's other alerts, not other services'; a page holds back tickets of
    # the same service only; alerts without a service are not caught by the "same service" rules.
    expect = {
        "EolakeServiceDown/tiles/page": False,
        "TileLatencyBudgetBurn/tiles/page": True,
        "EolakeErrorLogRate/catalog/ticket": True,
        "CatalogSearchLatencyBudgetBurn/catalog/page": False,
        "CatalogSearchAvailabilityBudgetBurn/web/ticket": False,
        "DiskWillFillIn4h/-/page": False,
        "CertificateExpiresSoon/-/ticket": False,
        "PostgresDown/postgres/page": False,
        "PostgresConnectionsNearLimit/postgres/ticket": True,
    }
    assert (
        inhibited(
            alertmanager,
            {"alertname": "EolakeServiceDown", "service": "tiles", "severity": "page"},
            {"alertname": "TileLatencyBudgetBurn", "service": "tiles", "severity": "page", "window": "1h"},
            {"alertname": "EolakeErrorLogRate", "service": "catalog", "severity": "ticket"},
            {"alertname": "CatalogSearchLatencyBudgetBurn", "service": "catalog", "severity": "page", "window": "1h"},
            {
                "alertname": "CatalogSearchAvailabilityBudgetBurn",
                "service": "web",
                "severity": "ticket",
                "window": "3d",
            },
            {"alertname": "DiskWillFillIn4h", "severity": "page", "instance": "node-1"},
            {"alertname": "CertificateExpiresSoon", "severity": "ticket", "name": "eolake-tls"},
            {"alertname": "PostgresDown", "service": "postgres", "severity": "page"},
            {"alertname": "PostgresConnectionsNearLimit", "service": "postgres", "severity": "ticket"},
            expect=expect,
        )
        == expect
    )
    # The platform is down: every other page and ticket is held back; the Watchdog and the source itself are not.
    expect = {"EolakePlatformDown/-/page": False, "Watchdog/-/none": False}
    assert (
        inhibited(
            alertmanager,
            {"alertname": "EolakePlatformDown", "severity": "page"},
            {"alertname": "Watchdog", "severity": "none"},
            expect=expect,
        )
        == expect
    )
    expect = {"DiskWillFillIn4h/-/page": True, "PostgresDown/postgres/page": True}
    assert (
        inhibited(
            alertmanager,
            {"alertname": "DiskWillFillIn4h", "severity": "page", "instance": "node-1"},
            {"alertname": "PostgresDown", "service": "postgres", "severity": "page"},
            expect=expect,
        )
        == expect
    )
