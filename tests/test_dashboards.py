"""Dashboards as code: the checked-in JSON is exactly what monitoring/dashboards/generate.py writes, and it is sound
(unique ids and uids, a data source on every panel, PromQL that parses). That the queries return data is proven
against a running platform by test_monitoring_e2e.py."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "monitoring" / "dashboards"
# Grafana's interval macros, replaced by a plain window where PromQL is checked or evaluated outside Grafana.
MACROS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def load_generator():
    spec = importlib.util.spec_from_file_location("eolake_dashboards_generate", DASHBOARDS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator():
    return load_generator()


@pytest.fixture(scope="module")
def dashboards(generator) -> dict[str, dict]:
    return generator.build_all()


def expand(expr: str) -> str:
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    return expr


def test_checked_in_json_matches_the_generator(generator, dashboards):
    checked_in = {p.name for p in DASHBOARDS.glob("*.json")}
    assert checked_in == set(dashboards), (
        f"dashboard files {sorted(checked_in ^ set(dashboards))} differ from "
        "the generator's: run python monitoring/dashboards/generate.py"
    )
    for name, dashboard in dashboards.items():
        assert (DASHBOARDS / name).read_text() == generator.render(dashboard), (
            f"{name} differs from the generator's output: run python monitoring/dashboards/generate.py"
        )


def test_check_mode_reports_drift(tmp_path):
    copy = tmp_path / "dashboards"
    shutil.copytree(DASHBOARDS, copy)
    (copy / "generate.py").write_text(
        (DASHBOARDS / "generate.py").read_text().replace("HERE.parent\n", f"Path({str(DASHBOARDS.parent)!r})\n", 1)
    )
    run = [sys.executable, str(copy / "generate.py"), "--check"]
    assert subprocess.run(run, capture_output=True, text=True).returncode == 0
    overview = copy / "overview.json"
    overview.write_text(overview.read_text().replace("platform overview", "platform overvieW"))
    drift = subprocess.run(run, capture_output=True, text=True)
    assert drift.returncode == 1
    assert "overview.json" in drift.stderr and "run python monitoring/dashboards/generate.py" in drift.stderr


def test_the_expected_dashboards_exist(generator, dashboards):
    services = generator.services_with_dashboards()
    assert "catalog" in services and services[-1] == "gateway"
    expected = {"overview.json", "database.json", "downloads.json", *(f"service-{s}.json" for s in services)}
    assert set(dashboards) == expected
    for service in services:
        titles = {t for t, _ in generator.panel_queries(dashboards[f"service-{service}.json"])}
        # rate, errors, duration, saturation
        assert {"Requests per second by route", "Error ratio", "Latency percentiles", "Requests in flight"} <= titles


def test_ids_uids_and_data_sources(dashboards):
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids) and all(uid.startswith("eolake-") for uid in uids)
    for name, dashboard in dashboards.items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (name, panel["title"])
            assert panel["targets"], f"{name}: panel {panel['title']!r} has no query"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(set(refs)) == len(refs), (name, panel["title"])
            assert 0 <= panel["gridPos"]["x"] and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_latency_percentiles_are_p50_p95_p99(dashboards):
    catalog = next(p for p in dashboards["service-catalog.json"]["panels"] if p["title"] == "Latency percentiles")
    assert [t["legendFormat"] for t in catalog["targets"]] == ["p50", "p95", "p99"]
    assert all("histogram_quantile" in t["expr"] for t in catalog["targets"])


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian package prometheus) is not installed")
def test_every_query_parses(generator, dashboards, tmp_path):
    """promtool parses PromQL when it checks rules: every panel query becomes a recording rule."""
    rules = [
        {"record": f"dashboard:query:{i}", "expr": expand(expr)}
        for i, (_, expr) in enumerate(q for d in dashboards.values() for q in generator.panel_queries(d))
    ]
    assert len(rules) > 50
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    check = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_panel_has_data_locally_unless_it_is_kubernetes_only(generator, dashboards):
    # The download service and its workers export the queue metrics: every panel of theirs has data locally.
    downloads = generator.panel_queries(dashboards["downloads.json"])
    assert downloads and not any(generator.not_local_reason(expr) for _, expr in downloads)
    for name in ("database.json", *(n for n in dashboards if n.startswith("service-"))):
        for title, expr in generator.panel_queries(dashboards[name]):
            # The database's Kubernetes-only queries (CloudNativePG, kubelet) have no data locally, by design.
            reason = generator.not_local_reason(expr)
            assert reason in (None, generator.kubernetes_only_reason(expr)), f"{name}: {title} has no data locally"
    panels = [p for p in dashboards["downloads.json"]["panels"] if p["type"] != "row"]
    assert panels and not any("No data locally" in p.get("description", "") for p in panels)


def test_database_dashboard_works_on_both_targets(generator, dashboards):
    """Every panel reads CloudNativePG's metrics (Kubernetes) and, unless it is Kubernetes only, postgres_exporter's
    (embedded, on-premise): no panel is blank on one of the targets."""
    panels = [p for p in dashboards["database.json"]["panels"] if p["type"] != "row"]
    kubernetes_only = set()
    for panel in panels:
        exprs = [t["expr"] for t in panel["targets"]]
        metrics = {m for expr in exprs for m in generator.SELECTED_METRIC.findall(expr)}
        assert metrics & generator.KUBERNETES_METRICS, f"{panel['title']}: no query for Kubernetes (CloudNativePG)"
        if all(generator.kubernetes_only_reason(expr) for expr in exprs):
            kubernetes_only.add(panel["title"])
            assert "Kubernetes only: reads " in panel["description"], panel["title"]
        else:
            assert any(m.startswith("pg_") for m in metrics), f"{panel['title']}: no query for postgres_exporter"
    assert {
        "Last successful backup",
        "Last backup failed",
        "Last WAL archived",
        "WAL archiving",
        "Replication lag",
        "Volume space used",
    } <= kubernetes_only
    assert "PostgreSQL up" not in kubernetes_only


def test_kubernetes_metrics_are_declared_and_selected(generator, dashboards):
    """The CloudNativePG, kubelet and kube-state-metrics names the dashboards read are in KUBERNETES_METRICS (the
    names those exporters export), each with a label selector, which is how kubernetes_only_reason finds them."""
    for name, dashboard in dashboards.items():
        for title, expr in generator.panel_queries(dashboard):
            names = set(generator.KUBERNETES_PREFIXES.findall(expr))
            assert names <= generator.KUBERNETES_METRICS, (name, title, names - generator.KUBERNETES_METRICS)
            assert names <= set(generator.SELECTED_METRIC.findall(expr)), (name, title)


def test_kubernetes_only_queries_are_told_apart(generator):
    cnpg = 'min(cnpg_collector_up{namespace=~"eolake.*"})'
    assert "only the Kubernetes target" in generator.not_local_reason(cnpg)
    assert generator.not_local_reason(generator.either('min(pg_up{job="postgres"})', cnpg)) is None
    assert generator.kubernetes_only_reason('sum(rate(eolake_http_requests_total{service="catalog"}[5m]))') is None
    assert generator.kubernetes_only_reason("vector(1)") is None


def test_json_is_deterministic(generator):
    first = {n: generator.render(d) for n, d in generator.build_all().items()}
    second = {n: generator.render(d) for n, d in load_generator().build_all().items()}
    assert first == second
    assert all(json.loads(text) for text in first.values())
