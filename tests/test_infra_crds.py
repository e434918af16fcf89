"""Every custom resource of every stack (and of the recovery and Gateway variants) against the models of the
operators' APIs (tests/crd_models.py): CloudNativePG Cluster, Pooler, ScheduledBackup; Prometheus Operator
ServiceMonitor, PodMonitor, PrometheusRule; Gateway API Gateway, HTTPRoute. Values and unknown fields."""

from __future__ import annotations

import copy
import functools

import crd_models
import pytest
import yaml
from infra_program import STACKS, VARIANTS, rendered, variant

ALL = {**{stack: stack for stack in STACKS}, **{label: variant(label) for label in VARIANTS}}


def custom_resources(stack: str) -> list[dict]:
    documents = (yaml.safe_load(text) for name, text in rendered(stack).items() if not name.startswith("helm/"))
    return [d for d in documents if d["apiVersion"].rpartition("/")[0] in crd_models.PACKAGES]


@functools.cache
def checked() -> tuple[list[tuple[str, dict]], dict[int, list[str]]]:
    """All stacks' custom resources, checked in one go (one node and one tsc run)."""
    documents = [(label, d) for label, stack in ALL.items() for d in custom_resources(stack)]
    return documents, crd_models.problems([d for _, d in documents])


@pytest.mark.parametrize("label", ALL)
def test_custom_resources_match_the_operators_apis(label):
    documents, found = checked()
    mine = [(i, d) for i, (owner, d) in enumerate(documents) if owner == label]
    bad = {f"{d['kind']}/{d['metadata']['name']}": found[i] for i, d in mine if i in found}
    assert not bad, bad
    kinds = {d["kind"] for _, d in mine}
    assert {"Cluster", "Pooler", "ScheduledBackup", "ServiceMonitor", "PrometheusRule"} <= kinds
    if "gateway" in label:
        assert "HTTPRoute" in kinds


def test_every_custom_kind_has_a_model():
    for stack in ALL.values():
        for document in custom_resources(stack):
            crd_models.module(document)  # KeyError for a group no package models
    with pytest.raises(KeyError, match="keda.sh"):
        crd_models.module({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject"})


def spoiled(kind: str, spoil) -> dict:
    documents, _ = checked()
    document = copy.deepcopy(next(d for _, d in documents if d["kind"] == kind))
    spoil(document)
    return document


def test_wrong_values_and_unknown_fields_fail():
    cases = {
        "unknown Pooler field": (spoiled("Pooler", lambda d: d["spec"].update(poolMode="session")), "poolMode"),
        "Cluster enum": (
            spoiled("Cluster", lambda d: d["spec"].update(primaryUpdateStrategy="whenever")),
            "primaryUpdateStrategy",
        ),
        "nested unknown field": (
            spoiled(
                "Cluster",
                lambda d: d["spec"]["backup"]["barmanObjectStore"].update(endpointUrl="https://s3.example.org"),
            ),
            "endpointUrl",
        ),
        "ServiceMonitor endpoint": (
            spoiled("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(scrapeInterval="15s")),
            "scrapeInterval",
        ),
        "ScheduledBackup method": (spoiled("ScheduledBackup", lambda d: d["spec"].update(method="tape")), "method"),
        "instances as text": (spoiled("Cluster", lambda d: d["spec"].update(instances="three")), "instances"),
    }
    found = crd_models.problems([document for document, _ in cases.values()])
    for i, (name, (_, field)) in enumerate(cases.items()):
        assert any(field in message for message in found.get(i, [])), (name, found.get(i))


def test_free_form_maps_stay_open():
    """Postgres parameters, PgBouncer parameters and alert labels are maps: any key is fine."""
    cluster = spoiled("Cluster", lambda d: d["spec"]["postgresql"]["parameters"].update(work_mem="64MB"))
    pooler = spoiled("Pooler", lambda d: d["spec"]["pgbouncer"]["parameters"].update(server_idle_timeout="60"))
    rule = spoiled(
        "PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].setdefault("labels", {}).update(team="eo")
    )
    assert crd_models.problems([cluster, pooler, rule]) == {}
