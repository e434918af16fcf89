"""Observability: Helm releases managed by Pulumi, each toggled by kubernetes.releases.

eolake's own rules and dashboards (monitoring/) are loaded as PrometheusRule resources and Grafana dashboard
ConfigMaps, and monitoring/alertmanager/alertmanager.yml becomes kube-prometheus-stack's `alertmanager.config`
(routes, inhibitions and receivers as in the file); all of them are read when the program runs, and a checkout
without them deploys the stack without them. monitoring/ is found next to the spec's stacks/ folder
(`eolake_spec.STACKS_DIR.parent`): this package depends on eolake_spec only.

The PrometheusRules and dashboard ConfigMaps depend on the kube-prometheus-stack release, which installs the
Prometheus Operator CRDs and creates the monitoring namespace; `releases()` returns that release so that the
program can make the other monitoring custom resources (ServiceMonitors, PodMonitors) depend on it as well, and a
first `pulumi up` on an empty cluster succeeds.

Chart pins (checked against the charts' Git history, prometheus-community/helm-charts and
jaegertracing/helm-charts): kube-prometheus-stack 65.8.1 (operator v0.77.2), prometheus-adapter 4.11.0 (adapter
v0.12.0, `rules.external` → the adapter's `externalRules`), jaeger 3.4.1 (Jaeger 1.53.0 all-in-one). Newer majors
exist (kube-prometheus-stack 88.x, prometheus-adapter 5.x, jaeger 4.x on Jaeger v2, whose values differ): bump
deliberately, with a render diff.

External prerequisites, not deployed here: web analytics and the OIDC issuer. `kubernetes.releases.matomo` and
`kubernetes.releases.keycloak` are accepted by the spec but ignored: the Bitnami charts they used pinned a Matomo
chart version that was never released, and Bitnami withdrew the Keycloak and Matomo images from their public
registry. Run Matomo yourself and set `observability.matomo_url` (and `matomo_site_id`); run an OIDC provider
(e.g. Keycloak from its own operator and quay.io/keycloak images) and set `auth.oidc_issuer`, `oidc_audience` and
`oidc_jwks_url`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import yaml

from eolake_infra.config import KUBE_PROMETHEUS_STACK, PROMETHEUS_PORT, Context
from eolake_spec import STACKS_DIR
from eolake_spec.alerting import alertmanager_config

MONITORING = STACKS_DIR.parent / "monitoring"
PROMETHEUS_COMMUNITY = "https://prometheus-community.github.io/helm-charts"
QUEUE_DEPTH = "eolake_download_queue_depth"  # the downloads worker HPA's External metric (workers.py)

# prometheus-adapter: the per-pod request rate the HPAs scale on, from the kit's own counter (not an ingress
# controller's metric, so any ingress controller works).
ADAPTER_RULE = {
    "seriesQuery": 'eolake_http_requests_total{namespace!="",pod!=""}',
    "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
    "name": {"matches": "^eolake_http_requests_total$", "as": "eolake_http_requests_per_second"},
    "metricsQuery": "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)",
}
# The download queue as an External metric: the HPA asks for it in its own namespace with `service=<name>`; the
# adapter adds namespace="<HPA namespace>" (namespaced) and the selector to <<.LabelMatchers>>. Every API pod reports
# the same count (from the database), so the value is the max over the service's pods, not their sum.
ADAPTER_EXTERNAL_RULE = {
    "seriesQuery": f'{QUEUE_DEPTH}{{namespace!="",service!=""}}',
    "resources": {"namespaced": True, "overrides": {"namespace": {"resource": "namespace"}}},
    "name": {"matches": f"^{QUEUE_DEPTH}$", "as": QUEUE_DEPTH},
    "metricsQuery": "max by (service) (<<.Series>>{<<.LabelMatchers>>})",
}


@dataclass
class Releases:
    """What other components must depend on."""

    # The kube-prometheus-stack Release (Prometheus Operator CRDs: ServiceMonitor, PodMonitor, PrometheusRule) when
    # enabled, else empty (the CRDs are then a cluster prerequisite).
    monitoring_crds: list[pulumi.Resource] = field(default_factory=list)


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


def alertmanager_routes(root: Path = MONITORING) -> dict | None:
    """monitoring/alertmanager/alertmanager.yml, parsed; None without it (the chart's default config applies)."""
    path = root / "alertmanager" / "alertmanager.yml"
    if not path.is_file():
        return None
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict) or "route" not in document or "receivers" not in document:
        raise ValueError(f"{path}: not an Alertmanager configuration (needs route and receivers)")
    return document


def _slug(path: Path) -> str:
    stem = str(path.with_suffix("")).lower()
    return "".join(c if c.isalnum() else "-" for c in stem).strip("-")


def releases(ctx: Context, opts: pulumi.ResourceOptions) -> Releases:
    """Declare the enabled releases (and eolake's rules, dashboards and Alertmanager routes with
    kube-prometheus-stack) in kubernetes.monitoring_namespace.

    Returns `Releases`: `monitoring_crds` is `[the kube-prometheus-stack Release]` when that release is enabled,
    else `[]`. Pass it as `depends_on` to every resource whose kind those CRDs define (ServiceMonitor, PodMonitor,
    PrometheusRule; the rules declared here already do), so a first `pulumi up` on an empty cluster succeeds.
    `kubernetes.releases.matomo` and `.keycloak` are ignored: both are external prerequisites (module docstring).
    """
    on, ns = ctx.k8s.releases, ctx.k8s.monitoring_namespace
    prometheus_url = f"http://{KUBE_PROMETHEUS_STACK}-prometheus.{ns}.svc"
    result = Releases()

    def release(name: str, chart: str, version: str, repo: str, values: dict) -> k8s.helm.v3.Release:
        return k8s.helm.v3.Release(
            name,
            name=name,
            chart=chart,
            version=version,
            namespace=ns,
            create_namespace=True,
            repository_opts={"repo": repo},
            values=values,
            opts=opts,
        )

    if on.kube_prometheus_stack:
        values: dict = {
            "prometheus": {
                "prometheusSpec": {  # pick up eolake's ServiceMonitors and rules without Helm labels
                    "serviceMonitorSelectorNilUsesHelmValues": False,
                    "podMonitorSelectorNilUsesHelmValues": False,
                    "ruleSelectorNilUsesHelmValues": False,
                    "retention": ctx.platform.observability.retention,
                    "retentionSize": ctx.platform.observability.retention_size,
                }
            },
            "grafana": {
                "admin": {
                    "existingSecret": ctx.k8s.secrets.grafana_admin,
                    "userKey": "admin-user",
                    "passwordKey": "admin-password",
                },
                "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard", "searchNamespace": ns}},
            },
        }
        routes = alertmanager_routes()
        if routes is not None:
            values["alertmanager"] = {"config": alertmanager_config(routes, ctx.platform.observability)}
        stack = release(KUBE_PROMETHEUS_STACK, KUBE_PROMETHEUS_STACK, "65.8.1", PROMETHEUS_COMMUNITY, values)
        result.monitoring_crds.append(stack)
        # The CRDs and the namespace come with the release: the rules and dashboards wait for it.
        after = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[stack]))
        labels = {"app.kubernetes.io/part-of": "eolake"}
        for name, spec in rule_files().items():
            k8s.apiextensions.CustomResource(
                name,
                api_version="monitoring.coreos.com/v1",
                kind="PrometheusRule",
                metadata={"name": name, "namespace": ns, "labels": labels},
                spec=spec,
                opts=after,
            )
        for name, text in dashboards().items():
            k8s.core.v1.ConfigMap(
                name,
                metadata={"name": name, "namespace": ns, "labels": {**labels, "grafana_dashboard": "1"}},
                data={f"{name}.json": text},
                opts=after,
            )
    if on.prometheus_adapter:
        release(
            "prometheus-adapter",
            "prometheus-adapter",
            "4.11.0",
            PROMETHEUS_COMMUNITY,
            {
                "prometheus": {"url": prometheus_url, "port": PROMETHEUS_PORT},
                # the chart writes `external` as the adapter's externalRules and registers external.metrics.k8s.io
                "rules": {"default": False, "custom": [ADAPTER_RULE], "external": [ADAPTER_EXTERNAL_RULE]},
            },
        )
    if on.jaeger:  # all-in-one, OTLP on 4317/4318; point observability.otlp_endpoint at jaeger-collector
        release(
            "jaeger",
            "jaeger",
            "3.4.1",
            "https://jaegertracing.github.io/helm-charts",
            {
                "provisionDataStore": {"cassandra": False},
                "storage": {"type": "memory"},
                "allInOne": {"enabled": True, "extraEnv": [{"name": "COLLECTOR_OTLP_ENABLED", "value": "true"}]},
                "agent": {"enabled": False},
                "collector": {"enabled": False},
                "query": {"enabled": False},
            },
        )
    return result
