"""Observability and identity: Helm releases managed by Pulumi, each toggled by kubernetes.releases.

eolake's own rules and dashboards (monitoring/) are loaded as PrometheusRule resources and Grafana dashboard
ConfigMaps, read when the program runs; a checkout without them deploys the stack without them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import yaml

from eolake.paths import REPO_ROOT
from eolake_infra.config import Context

MONITORING = REPO_ROOT / "monitoring"
PROMETHEUS_COMMUNITY = "https://prometheus-community.github.io/helm-charts"
MATOMO_SECRET, KEYCLOAK_SECRET = "eolake-matomo", "eolake-keycloak-admin"

# prometheus-adapter: the per-pod request rate the HPAs scale on, from the kit's own counter (not an ingress
# controller's metric, so any ingress controller works).
ADAPTER_RULE = {
    "seriesQuery": 'eolake_http_requests_total{namespace!="",pod!=""}',
    "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
    "name": {"matches": "^eolake_http_requests_total$", "as": "eolake_http_requests_per_second"},
    "metricsQuery": "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)",
}


def rule_files(root: Path = MONITORING) -> dict[str, dict]:
    """Prometheus rule files (`groups:`) under monitoring/, by a resource-safe name."""
    found = {}
    for path in sorted(root.glob("**/*.y*ml")):
        document = yaml.safe_load(path.read_text()) if path.is_file() else None
        if isinstance(document, dict) and isinstance(document.get("groups"), list) and document["groups"]:
            found["eolake-" + _slug(path.relative_to(root))] = {"groups": document["groups"]}
    return found


def dashboards(root: Path = MONITORING) -> dict[str, str]:
    found = {}
    for path in sorted(root.glob("dashboards/**/*.json")):
        json.loads(path.read_text())  # a broken dashboard fails the deploy, not Grafana at runtime
        found["eolake-dashboard-" + _slug(path.relative_to(root / "dashboards"))] = path.read_text()
    return found


def _slug(path: Path) -> str:
    stem = str(path.with_suffix("")).lower()
    return "".join(c if c.isalnum() else "-" for c in stem).strip("-")


def releases(ctx: Context, opts: pulumi.ResourceOptions) -> None:
    on, ns = ctx.k8s.releases, ctx.k8s.monitoring_namespace
    prometheus_url = f"http://kube-prometheus-stack-prometheus.{ns}.svc"

    def release(name: str, chart: str, version: str, repo: str, values: dict) -> None:
        k8s.helm.v3.Release(name, name=name, chart=chart, version=version, namespace=ns, create_namespace=True,
                            repository_opts={"repo": repo}, values=values, opts=opts)

    if on.kube_prometheus_stack:
        release("kube-prometheus-stack", "kube-prometheus-stack", "65.8.1", PROMETHEUS_COMMUNITY, {
            "prometheus": {"prometheusSpec": {  # pick up eolake's ServiceMonitors and rules without Helm labels
                "serviceMonitorSelectorNilUsesHelmValues": False, "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False, "retention": "15d"}},
            "grafana": {"admin": {"existingSecret": ctx.k8s.secrets.grafana_admin,
                                  "userKey": "admin-user", "passwordKey": "admin-password"},
                        "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard",
                                                   "searchNamespace": ns}}},
        })
        labels = {"app.kubernetes.io/part-of": "eolake"}
        for name, spec in rule_files().items():
            k8s.apiextensions.CustomResource(name, api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
                                             metadata={"name": name, "namespace": ns, "labels": labels},
                                             spec=spec, opts=opts)
        for name, text in dashboards().items():
            k8s.core.v1.ConfigMap(name, metadata={"name": name, "namespace": ns,
                                                  "labels": {**labels, "grafana_dashboard": "1"}},
                                  data={f"{name}.json": text}, opts=opts)
    if on.prometheus_adapter:
        release("prometheus-adapter", "prometheus-adapter", "4.11.0", PROMETHEUS_COMMUNITY, {
            "prometheus": {"url": prometheus_url, "port": 9090},
            "rules": {"default": False, "custom": [ADAPTER_RULE]},
        })
    if on.jaeger:  # all-in-one, OTLP on 4317/4318; point observability.otlp_endpoint at jaeger-collector
        release("jaeger", "jaeger", "3.4.1", "https://jaegertracing.github.io/helm-charts", {
            "provisionDataStore": {"cassandra": False}, "storage": {"type": "memory"},
            "allInOne": {"enabled": True, "extraEnv": [{"name": "COLLECTOR_OTLP_ENABLED", "value": "true"}]},
            "agent": {"enabled": False}, "collector": {"enabled": False}, "query": {"enabled": False},
        })
    if on.matomo:
        release("matomo", "matomo", "9.0.1", "https://charts.bitnami.com/bitnami", {
            "existingSecret": MATOMO_SECRET, "service": {"type": "ClusterIP"},
        })
    if on.keycloak:
        release("keycloak", "keycloak", "24.2.3", "https://charts.bitnami.com/bitnami", {
            "auth": {"existingSecret": KEYCLOAK_SECRET, "passwordSecretKey": "admin-password"},
            "proxy": "edge", "production": True,
        })
