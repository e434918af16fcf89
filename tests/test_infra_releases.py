"""The Helm releases (infra/eolake_infra/releases.py), run in isolation under Pulumi mocks.

releases() is called on its own (not through the whole program), with a Context built from each real stack and
from variants of it, and a mock monitor that also records what MockResourceArgs leaves out: depends_on.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass

import pulumi
import pytest
import yaml

from eolake_infra import config, releases, render
from eolake_spec import STACKS_DIR, Platform, load_stack

STACKS = ["dev", "staging", "prod"]
KPS = "kube-prometheus-stack"
ALERTMANAGER = STACKS_DIR.parent / "monitoring" / "alertmanager" / "alertmanager.yml"


@dataclass
class Run:
    resources: list[render.Recorded]
    crd_urns: list[str]  # URNs of what releases() returned in monitoring_crds

    def releases(self) -> dict[str, render.Recorded]:
        return {r.state["name"]: r for r in self.resources if r.type == "kubernetes:helm.sh/v3:Release"}

    def of_kind(self, kind: str) -> list[render.Recorded]:
        return [r for r in self.resources if r.state.get("kind") == kind]


def run_releases(platform: Platform) -> Run:
    ctx = config.Context(platform, platform.kubernetes, "test")  # no resolve(): only releases() is under test
    urns: list[str] = []

    def program():
        result = releases.releases(ctx, pulumi.ResourceOptions())
        assert isinstance(result, releases.Releases)
        for resource in result.monitoring_crds:
            resource.urn.apply(urns.append)

    return Run(render.record("test", program), urns)


def with_releases(platform: Platform, **toggles: bool) -> Platform:
    k8s = platform.kubernetes
    changed = k8s.model_copy(update={"releases": k8s.releases.model_copy(update=toggles)})
    return platform.model_copy(update={"kubernetes": changed})


ALL_ON = {"kube_prometheus_stack": True, "prometheus_adapter": True, "jaeger": True, "matomo": True, "keycloak": True}


@pytest.mark.parametrize("stack", STACKS)
def test_monitoring_resources_wait_for_the_release_with_their_crds(stack):
    platform = load_stack(stack)
    assert platform.kubernetes.releases.kube_prometheus_stack, "the stacks deploy kube-prometheus-stack"
    run = run_releases(platform)
    kps = run.releases()[KPS]
    assert run.crd_urns == [kps.urn]
    rules = run.of_kind("PrometheusRule")
    assert rules, "monitoring/ holds rule files"
    assert {r.name for r in rules} == set(releases.rule_files())
    for rule in rules:
        assert kps.urn in rule.dependencies, f"PrometheusRule {rule.name} does not wait for {KPS}"
    # the dashboards go into the namespace the release creates
    dashboards = [r for r in run.of_kind("ConfigMap") if r.state["metadata"]["labels"].get("grafana_dashboard")]
    assert {d.name for d in dashboards} == set(releases.dashboards()) and dashboards
    for dashboard in dashboards:
        assert kps.urn in dashboard.dependencies, f"ConfigMap {dashboard.name} does not wait for {KPS}"


def test_without_kube_prometheus_stack_there_is_nothing_to_wait_for():
    run = run_releases(with_releases(load_stack("prod"), kube_prometheus_stack=False))
    assert KPS not in run.releases()
    assert run.crd_urns == []
    assert not run.of_kind("PrometheusRule") and not run.of_kind("ConfigMap")


@pytest.mark.parametrize("stack", STACKS)
def test_adapter_serves_the_download_queue_depth_as_an_external_metric(stack):
    platform = load_stack(stack)
    rules = run_releases(platform).releases()["prometheus-adapter"].state["values"]["rules"]
    assert rules["custom"] == [releases.ADAPTER_RULE]  # the request-rate rule stays
    external = {r["name"]["as"]: r for r in rules.get("external", [])}
    queue = platform.manifest("downloads").worker.queue_metric  # what the worker HPA scales on
    assert queue == "eolake_download_queue_depth"
    assert queue in external, f"no prometheus-adapter external rule serves {queue}"
    rule = external[queue]
    assert re.search(rule["name"]["matches"], queue) and rule["seriesQuery"].startswith(queue + "{")
    assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}
    assert rule["resources"].get("namespaced", True) is True  # the HPA's namespace is added to the query
    assert rule["metricsQuery"].startswith("max") and "<<.LabelMatchers>>" in rule["metricsQuery"]


@pytest.mark.parametrize("stack", STACKS)
def test_alertmanager_routes_are_the_projects(stack):
    values = run_releases(load_stack(stack)).releases()[KPS].state["values"]
    wanted = yaml.safe_load(ALERTMANAGER.read_text())
    assert values["alertmanager"]["config"] == wanted
    assert [r["name"] for r in values["alertmanager"]["config"]["receivers"]] == ["page", "ticket", "heartbeat"]


def test_the_stacks_receivers_and_retention_reach_the_chart():
    platform = load_stack("prod")
    obs = type(platform.observability).model_validate(
        {
            **platform.observability.model_dump(),
            "retention": "30d",
            "retention_size": "50GB",
            "receivers": {"page": [{"webhook": "https://pager.example.org/hook"}]},
        }
    )
    values = run_releases(platform.model_copy(update={"observability": obs})).releases()[KPS].state["values"]
    spec = values["prometheus"]["prometheusSpec"]
    assert (spec["retention"], spec["retentionSize"]) == ("30d", "50GB")
    page = next(r for r in values["alertmanager"]["config"]["receivers"] if r["name"] == "page")
    assert page["webhook_configs"] == [{"url": "https://pager.example.org/hook", "send_resolved": True}]


@pytest.mark.parametrize("stack", STACKS)
def test_no_release_uses_bitnami_and_matomo_keycloak_are_external(stack):
    for platform in (load_stack(stack), with_releases(load_stack(stack), **ALL_ON)):
        found = run_releases(platform).releases()
        for name, release in found.items():
            assert "bitnami" not in release.state["repositoryOpts"]["repo"], name
            assert re.fullmatch(r"\d+\.\d+\.\d+", release.state["version"]), (name, release.state["version"])
        on = platform.kubernetes.releases
        assert set(found) == {
            name
            for name, enabled in {
                KPS: on.kube_prometheus_stack,
                "jaeger": on.jaeger,
                "prometheus-adapter": on.prometheus_adapter,
            }.items()
            if enabled
        }


def test_infra_depends_on_the_spec_not_the_platform_package():
    tree = ast.parse(inspect.getsource(releases))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {m for m in imported if m == "eolake" or m.startswith("eolake.")}, imported
    assert releases.MONITORING == STACKS_DIR.parent / "monitoring"
