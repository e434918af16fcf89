"""The flow test: from each stack's rendered manifests, which pod may talk to which (NetworkPolicy semantics,
tests/netpol.py) must equal the needed graph: the manifests' `calls`, plus the platform's fixed flows. Both
directions: a needed flow that is blocked fails, and so does an allowed flow that nobody needs."""

from __future__ import annotations

import netpol
import pytest
import yaml
from infra_program import STACKS, VARIANTS, program, rendered, variant

METADATA = netpol.ip("169.254.169.254/32", ("TCP", 80), ("TCP", 443), name="metadata")
STRANGER = netpol.external("stranger", "default", {"app": "anything"})


def outside(stack: str) -> tuple:
    """The pods and addresses around the namespace; `ingress` is the stack's ingress controller or Gateway proxy,
    and `neighbour` another pod of its namespace (admitted only when the spec names no proxy labels)."""
    settings = program(stack).context.k8s.ingress
    proxy = netpol.external(
        "ingress", settings.proxy_namespace, settings.proxy_labels or {"app": "proxy"}, {"http": ("TCP", 8080)}
    )
    neighbour = netpol.external("neighbour", settings.proxy_namespace, {"app": "neighbour"})
    return (proxy, neighbour, netpol.PROMETHEUS, netpol.KUBE_DNS, netpol.CNPG_OPERATOR, netpol.INTERNET, METADATA)


def manifests(stack: str) -> list[dict]:
    return [doc for text in rendered(stack).values() for doc in yaml.safe_load_all(text) if doc]


def needed(stack: str) -> set[tuple[str, str, int]]:
    """(source, destination, port) between eolake's own workloads and the in-cluster peers that matter."""
    ctx = program(stack).context
    pooler = ctx.pooler
    edges: set[tuple[str, str, int]] = set()
    for name in ctx.services:
        m = ctx.manifest(name)
        callers = ["ingress", "prometheus", *([] if ctx.k8s.ingress.proxy_labels else ["neighbour"])]
        edges |= {(caller, name, m.port) for caller in callers}
        edges |= {(name, callee, ctx.manifest(callee).port) for callee in m.calls if callee in ctx.services}
        if m.database:
            edges.add((name, pooler, 5432))
        if m.worker:
            edges |= {(f"{name}-worker", pooler, 5432), ("prometheus", f"{name}-worker", m.worker.metrics_port)}
    return edges


def allowed(stack: str) -> set[tuple[str, str, int]]:
    """Allowed TCP flows whose source and destination are eolake services, workers, the pooler, the ingress
    controller, Prometheus or a stranger pod."""
    ctx = program(stack).context
    ours = {*ctx.services, *(f"{n}-worker" for n in ctx.services if ctx.manifest(n).worker), ctx.pooler}
    relevant = ours | {"ingress", "neighbour", "prometheus", "stranger"}
    found = netpol.flows(manifests(stack), extra=(*outside(stack), STRANGER))
    return {
        (src, dst, port)
        for src, dst, protocol, port in found
        if protocol == "TCP"
        and src in relevant
        and dst in ours
        and (src in ours or dst in ours)
        and not (dst == ctx.pooler and port != 5432)
    }  # the pooler's metrics port: scraped, not needed here


# The committed stacks, and the variants: prod recovering into a new database cluster (test_infra_recovery.py),
# behind its own Gateway, staging behind a shared one (test_infra_ingress.py).
ALL = [*STACKS, *(pytest.param(variant(label), id=label) for label in VARIANTS)]


@pytest.mark.parametrize("stack", ALL)
def test_allowed_flows_equal_the_needed_graph(stack):
    want, have = needed(stack), allowed(stack)
    assert not want - have, f"needed but blocked: {sorted(want - have)}"
    assert not have - want, f"allowed but not needed: {sorted(have - want)}"


@pytest.mark.parametrize("stack", ALL)
def test_services_never_reach_the_metadata_service_or_each_other_unasked(stack):
    found = netpol.flows(manifests(stack), extra=outside(stack))
    ctx = program(stack).context
    outsiders = {e.name for e in outside(stack)}
    assert not {(s, d) for s, d, _, _ in found if d == "metadata" and s not in outsiders}
    internet = {s for s, d, _, _ in found if d == "internet"}
    external_users = {
        n for n in ctx.services if {"storage"} & set(ctx.manifest(n).secrets) and ctx.platform.storage.kind == "s3"
    } | ({"search"} & set(ctx.services))
    # Only what needs storage, providers or the identity provider goes out (plus the database and the workers).
    assert internet & set(ctx.services) <= external_users
    assert "web" not in internet and "thesaurus" not in internet and "catalog" not in internet


def test_the_graph_follows_the_manifests_calls():
    """Not a tautology: the needed graph names the calls the manifests declare, and the render allows them."""
    have = allowed("prod")
    assert ("search", "catalog", 8081) in have and ("search", "thesaurus", 8085) in have
    assert ("timeseries", "catalog", 8081) in have and ("downloads", "catalog", 8081) in have
    assert ("web", "catalog", 8081) not in have and ("catalog", "search", 8086) not in have
    assert ("stranger", "catalog", 8081) not in have
