"""The flow test: from each stack's rendered manifests, which pod may talk to which (NetworkPolicy semantics,
tests/netpol.py) must equal the needed graph: the manifests' `calls`, plus the platform's fixed flows. Both
directions: a needed flow that is blocked fails, and so does an allowed flow that nobody needs. The first graph is
between the services, workers, pooler, ingress and Prometheus; the second covers every pod of the namespace (Jobs and
PostgreSQL too) and every peer, DNS and the flows out of the cluster included."""

from __future__ import annotations

from urllib.parse import urlsplit

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
        if ctx.platform.reads_from_replica(name):
            edges.add((name, ctx.read_pooler, 5432))
        if m.worker:
            edges |= {(f"{name}-worker", pooler, 5432), ("prometheus", f"{name}-worker", m.worker.metrics_port)}
    return edges


def allowed(stack: str) -> set[tuple[str, str, int]]:
    """Allowed TCP flows whose source and destination are eolake services, workers, the pooler, the ingress
    controller, Prometheus or a stranger pod."""
    ctx = program(stack).context
    ours = {*ctx.services, *(f"{n}-worker" for n in ctx.services if ctx.manifest(n).worker), *ctx.poolers}
    relevant = ours | {"ingress", "neighbour", "prometheus", "stranger"}
    found = netpol.flows(manifests(stack), extra=(*outside(stack), STRANGER))
    return {
        (src, dst, port)
        for src, dst, protocol, port in found
        if protocol == "TCP"
        and src in relevant
        and dst in ours
        and (src in ours or dst in ours)
        and not (dst in ctx.poolers and port != 5432)
    }  # the poolers' metrics port: scraped, not needed here


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


# --- the whole namespace: DNS, the database's own flows, the migration Jobs and what leaves the cluster ----------

ALERTMANAGER = netpol.external(
    "alertmanager", "monitoring", {"app.kubernetes.io/name": "alertmanager"}, {"web": ("TCP", 9093)}
)
# Addresses outside the cluster (storage, providers, the identity provider, the API server's): NetworkPolicies can
# only tell them apart by port, so one endpoint listening on every port anything here might use.
OUTSIDE_PORTS = (80, 443, 4317, 4318, 5432, 5672, 6443, 8080, 9000, 9090)
OUTSIDE = netpol.ip("203.0.113.0/24", *(("TCP", p) for p in OUTSIDE_PORTS), name="outside")


def port_of(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def collector(stack: str) -> netpol.Workload | None:
    """The trace collector of the spec's OTLP endpoint (`<service>.<namespace>:<port>`), a pod of that namespace."""
    otlp = program(stack).context.platform.observability.otlp_endpoint
    if not otlp:
        return None
    namespace = urlsplit(otlp).hostname.split(".")[1]
    return netpol.external("collector", namespace, {"app": "collector"}, {"otlp": ("TCP", port_of(otlp))})


def workload_name(name: str) -> str:
    """Jobs are named after a hash of their image: `pgstac-migrate-<hash>` → `pgstac-migrate`."""
    head, _, tail = name.rpartition("-")
    return head if head.endswith(("-migrate", "-schema")) and len(tail) == 10 else name


def needed_everywhere(stack: str) -> set[tuple[str, str, str, int]]:
    """Every flow a pod of the namespace takes part in, from the spec and the manifests alone."""
    ctx = program(stack).context
    platform, cluster = ctx.platform, ctx.cluster
    otlp = platform.observability.otlp_endpoint
    bootstrap = f"{cluster}-{'full-recovery' if ctx.k8s.postgres.recovery else 'initdb'}"
    tcp = {(s, d, "TCP", p) for s, d, p in needed(stack)}
    out: set[tuple[str, int]] = set()  # (pod, port) out of the cluster
    databases = [n for n in ctx.services if ctx.manifest(n).database]
    jobs = ["pgstac-migrate"] * bool(databases) + [f"{n}-schema" for n in ctx.services if ctx.manifest(n).schema]
    for name in ctx.services:
        m = ctx.manifest(name)
        pods = [name, *([f"{name}-worker"] if m.worker else [])]
        ports: set[int] = set()
        if "storage" in m.secrets and platform.storage.kind == "s3":
            ports.add(port_of(platform.storage.endpoint or "https://s3.amazonaws.com"))
        if name == "search":
            ports |= {port_of(p.url) for p in platform.providers if p.enabled and p.url and "://" in p.url}
        if platform.auth.oidc_issuer:
            ports.add(port_of(platform.auth.oidc_jwks_url or platform.auth.oidc_issuer))
        out |= {(pod, port) for pod in pods for port in ports}
        if m.worker:
            out.add((f"{name}-worker", 443))  # the files it fetches from their sources
        if otlp:
            tcp |= {(pod, "collector", "TCP", port_of(otlp)) for pod in pods}
    if "web" in ctx.services and ctx.k8s.releases.kube_prometheus_stack:
        tcp |= {("web", "prometheus", "TCP", 9090), ("web", "alertmanager", "TCP", 9093)}
    # CloudNativePG: pooler → instances, replication, the bootstrap (join, recovery) Jobs, the operator, metrics,
    # and the Kubernetes API and the backups' object store for the instance managers.
    tcp |= {(each, cluster, "TCP", 5432) for each in ctx.poolers}
    tcp |= {("prometheus", each, "TCP", 9127) for each in ctx.poolers}
    tcp |= {
        (cluster, cluster, "TCP", 5432),
        (bootstrap, cluster, "TCP", 5432),
        ("cnpg-operator", cluster, "TCP", 5432),
        ("cnpg-operator", cluster, "TCP", 8000),
        ("prometheus", cluster, "TCP", 9187),
        *((job, cluster, "TCP", 5432) for job in jobs),
    }
    out |= {(pod, port) for pod in (cluster, bootstrap, *ctx.poolers) for port in (443, 6443)}
    tcp |= {(pod, "outside", "TCP", port) for pod, port in out}
    namespace = {*ctx.services, *(f"{n}-worker" for n in ctx.services if ctx.manifest(n).worker)}
    namespace |= {cluster, bootstrap, *ctx.poolers, *jobs}
    dns = {(pod, "kube-dns", protocol, 53) for pod in namespace for protocol in ("TCP", "UDP")}
    return tcp | dns


def allowed_everywhere(stack: str) -> set[tuple[str, str, str, int]]:
    around = [o for o in outside(stack) if o is not netpol.INTERNET]  # OUTSIDE instead, on every port
    around += [ALERTMANAGER, OUTSIDE, STRANGER, *filter(None, [collector(stack)])]
    found = netpol.flows(manifests(stack), extra=around)
    inside = {workload_name(w.name) for w in netpol.workloads(manifests(stack))}
    named = {(workload_name(s), workload_name(d), protocol, port) for s, d, protocol, port in found}
    return {flow for flow in named if flow[0] in inside or flow[1] in inside}


@pytest.mark.parametrize("stack", ALL)
def test_every_flow_of_the_namespace_equals_the_needed_graph(stack):
    """Both directions, for every pod of the namespace (services, workers, Jobs, PostgreSQL, the pooler) and every
    peer: DNS, the database's own flows, and what leaves the cluster (the storage's, providers', identity
    provider's and API server's ports), the metadata service never."""
    want, have = needed_everywhere(stack), allowed_everywhere(stack)
    assert not want - have, f"needed but blocked: {sorted(want - have)}"
    assert not have - want, f"allowed but not needed: {sorted(have - want)}"
