"""Kubernetes NetworkPolicy semantics, evaluated in pure Python over rendered manifests.

Manifests are dicts as ``yaml.safe_load`` gives them (camelCase keys, as Kubernetes writes them).

Endpoints (``Endpoint = Workload | IP``)
    ``Workload(name, namespace, labels, ports, port_names, namespace_labels)``
        the pods of one workload: their labels, the ``(protocol, port)`` pairs they listen on, their named
        ports (name -> ``(protocol, port)``) and the labels of their namespace (``kubernetes.io/metadata.name``
        is always added, as the API server does).
    ``external(name, namespace, labels, ports={name: (protocol, port)}, namespace_labels={})``
        a Workload for pods that are not in the manifests (the ingress controller, Prometheus, kube-dns...);
        ``INGRESS_NGINX``, ``PROMETHEUS``, ``KUBE_DNS`` and ``CNPG_OPERATOR`` are ready-made ones.
    ``ip(cidr, *ports, name=cidr)``
        addresses outside the cluster's pods, e.g. ``ip("0.0.0.0/0", ("TCP", 443), name="internet")``.
        An IP endpoint stands for every address of its CIDR; it matches an ipBlock when at least one of them
        is in ``cidr`` and in no ``except`` (use a /32 for one host). ``INTERNET`` is ``0.0.0.0/0`` on TCP 443.

Functions
    ``load(directory)``    the manifests in the *.yaml files of a directory (multi-document files too)
    ``workloads(manifests)``    the Workloads that Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs,
        CronJobs and Pods declare (pod template labels and containerPorts), plus CloudNativePG: a ``Cluster`` X
        gives instance pods (``cnpg.io/cluster: X``, ``cnpg.io/podRole: instance``; TCP 5432 postgresql,
        9187 metrics, 8000 status) and the Job that bootstraps it (``X-initdb``, or ``X-full-recovery`` with
        ``bootstrap.recovery``: ``cnpg.io/cluster: X``, ``cnpg.io/jobRole``, no port), and a ``Pooler`` Y gives
        PgBouncer pods (``cnpg.io/poolerName: Y``,
        ``cnpg.io/podRole: pooler`` and, as CloudNativePG >= 1.22 does, ``cnpg.io/cluster: <its cluster>``;
        TCP 5432 pgbouncer, 9127 metrics). Dynamic labels (``cnpg.io/instanceRole``...) are not modelled.
    ``matches(selector, labels)``    a LabelSelector (matchLabels and matchExpressions In, NotIn, Exists,
        DoesNotExist); ``{}`` or ``None`` matches everything.
    ``allowed(policies, src, dst, port, protocol="TCP")``    may src open a connection to dst:port?
        ``policies`` may be any manifests; only the NetworkPolicies count.
    ``flows(manifests, extra=(), probes=())``    every allowed ``(src_name, dst_name, protocol, port)`` over all
        pairs of ``workloads(manifests)`` + ``extra`` (a workload with itself included: one replica to another;
        IP to IP excluded). The ports tried are the destination's own ``ports`` plus ``probes`` (pairs tried
        on every destination, to expose rules that open ports nobody declares). Names must be unique.

Semantics (https://kubernetes.io/docs/concepts/services-networking/network-policies/)
    A pod is isolated for Ingress (Egress) when a NetworkPolicy of its namespace selects it (``podSelector``) and
    has that type in ``policyTypes``; missing ``policyTypes`` means Ingress, plus Egress if ``egress`` has rules.
    A flow is allowed iff (src is not egress-isolated or an egress rule of a policy selecting it admits dst:port)
    and (dst is not ingress-isolated or an ingress rule of a policy selecting it admits src:port). Policies add up.
    In a rule, a missing or empty ``from``/``to`` means every peer and missing or empty ``ports`` every port.
    A peer with ``podSelector`` alone means pods of the policy's namespace, ``namespaceSelector`` alone every pod
    of the matching namespaces, both together the pods matching both; ``ipBlock`` matches IP endpoints only
    (pods are never taken to match an ipBlock). A port entry has ``protocol`` (default TCP), an optional ``port``
    (missing: all ports of that protocol) which is a number, optionally up to ``endPort``, or a name resolved
    against the destination pod's named ports (in ingress and egress rules alike). Host-network pods are not
    modelled; IP endpoints are never isolated.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Port = tuple[str, int]  # (protocol, number)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
NAME_LABEL = "kubernetes.io/metadata.name"
CNPG_GROUP = "postgresql.cnpg.io/"
CNPG_INSTANCE_PORTS = {"postgresql": ("TCP", 5432), "metrics": ("TCP", 9187), "status": ("TCP", 8000)}
CNPG_POOLER_PORTS = {"pgbouncer": ("TCP", 5432), "metrics": ("TCP", 9127)}
# Where the pod template sits in each kind that makes pods.
TEMPLATES = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "Pod": (),
}


@dataclass(frozen=True)
class Workload:
    """The pods of one workload. Mappings are copied; treat them as read-only."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    ports: frozenset[Port] = frozenset()
    port_names: Mapping[str, Port] = field(default_factory=dict, hash=False)
    namespace_labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "labels", dict(self.labels))
        object.__setattr__(self, "ports", frozenset(self.ports))
        object.__setattr__(self, "port_names", dict(self.port_names))
        object.__setattr__(self, "namespace_labels", {**self.namespace_labels, NAME_LABEL: self.namespace})


@dataclass(frozen=True)
class IP:
    """Addresses outside the cluster's pods, with the ports of interest on them."""

    name: str
    network: Network
    ports: frozenset[Port] = frozenset()


Endpoint = Workload | IP


def ip(cidr: str, *ports: Port, name: str | None = None) -> IP:
    return IP(name or cidr, ipaddress.ip_network(cidr), frozenset(ports))


def external(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    ports: Mapping[str, Port] | None = None,
    namespace_labels: Mapping[str, str] | None = None,
) -> Workload:
    """Pods that are not in the manifests; ``ports`` maps each port's name to its (protocol, port)."""
    ports = ports or {}
    return Workload(name, namespace, labels, frozenset(ports.values()), ports, namespace_labels or {})


INGRESS_NGINX = external(
    "ingress-nginx",
    "ingress-nginx",
    {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
    {"http": ("TCP", 80), "https": ("TCP", 443)},
)
# RKE2's bundled controller (the clusters the OpenStack layer provisions): the same role, its own namespace and name.
RKE2_INGRESS_NGINX = external(
    "ingress-nginx",
    "kube-system",
    {"app.kubernetes.io/name": "rke2-ingress-nginx", "app.kubernetes.io/component": "controller"},
    {"http": ("TCP", 80), "https": ("TCP", 443)},
)
PROMETHEUS = external("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, {"web": ("TCP", 9090)})
KUBE_DNS = external(
    "kube-dns",
    "kube-system",
    {"k8s-app": "kube-dns"},
    {"dns": ("UDP", 53), "dns-tcp": ("TCP", 53), "metrics": ("TCP", 9153)},
)
CNPG_OPERATOR = external(
    "cnpg-operator",
    "cnpg-system",
    {"app.kubernetes.io/name": "cloudnative-pg"},
    {"metrics": ("TCP", 8080), "webhook-server": ("TCP", 9443)},
)
INTERNET = ip("0.0.0.0/0", ("TCP", 443), name="internet")


def load(directory: str | Path) -> list[dict]:
    """Every manifest (a dict with apiVersion and kind) in the *.yaml files directly in ``directory``."""
    docs = (doc for path in sorted(Path(directory).glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()))
    return [doc for doc in docs if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc]


# --- workloads -----------------------------------------------------------------------------------------------


def workloads(manifests: Iterable[dict]) -> list[Workload]:
    manifests = list(manifests)
    spaces = {
        m["metadata"]["name"]: (m["metadata"].get("labels") or {})
        for m in manifests
        if m.get("kind") == "Namespace" and m.get("apiVersion") == "v1"
    }
    return [w for m in manifests for w in _workloads(m, spaces)]


def _workloads(manifest: dict, spaces: Mapping[str, Mapping[str, str]]) -> list[Workload]:
    cnpg = manifest.get("apiVersion", "").startswith(CNPG_GROUP)
    pod = _cnpg_pod(manifest) if cnpg else _template_pod(manifest)
    if pod is None:
        return []
    labels, ports, names = pod
    meta = manifest["metadata"]
    namespace = meta.get("namespace", "default")
    found = [Workload(meta["name"], namespace, labels, ports, names, spaces.get(namespace, {}))]
    job = _cnpg_bootstrap_job(manifest) if cnpg else None
    if job:
        found.append(
            Workload(f"{meta['name']}-{job['cnpg.io/jobRole']}", namespace, job, (), {}, spaces.get(namespace, {}))
        )
    return found


def _cnpg_bootstrap_job(manifest: dict) -> dict[str, str] | None:
    """The labels of the Job that creates a Cluster's first instance (initdb, or full-recovery from a backup)."""
    if manifest.get("kind") != "Cluster":
        return None
    bootstrap = (manifest.get("spec") or {}).get("bootstrap") or {"initdb": {}}
    role = "full-recovery" if "recovery" in bootstrap else next(iter(bootstrap))
    name = manifest["metadata"]["name"]
    return {
        "app.kubernetes.io/managed-by": "cloudnative-pg",
        "cnpg.io/cluster": name,
        "cnpg.io/jobRole": role,
        "cnpg.io/instanceName": f"{name}-1",
    }


def _template_pod(manifest: dict) -> tuple[dict, set[Port], dict[str, Port]] | None:
    if manifest.get("kind") not in TEMPLATES:
        return None
    template = manifest
    for key in TEMPLATES[manifest["kind"]]:
        template = template.get(key) or {}
    spec = template.get("spec") or {}
    declared = [
        p for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])] for p in c.get("ports") or []
    ]
    ports = {(p.get("protocol", "TCP"), p["containerPort"]) for p in declared}
    names = {p["name"]: (p.get("protocol", "TCP"), p["containerPort"]) for p in declared if p.get("name")}
    return (template.get("metadata") or {}).get("labels") or {}, ports, names


def _cnpg_pod(manifest: dict) -> tuple[dict, set[Port], dict[str, Port]] | None:
    kind, name, spec = manifest.get("kind"), manifest["metadata"]["name"], manifest.get("spec") or {}
    common = {"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/managed-by": "cloudnative-pg"}
    if kind == "Cluster":
        inherited = (spec.get("inheritedMetadata") or {}).get("labels") or {}
        labels = {
            **inherited,
            **common,
            "cnpg.io/cluster": name,
            "cnpg.io/podRole": "instance",
            "app.kubernetes.io/instance": name,
            "app.kubernetes.io/component": "database",
        }
        return labels, set(CNPG_INSTANCE_PORTS.values()), CNPG_INSTANCE_PORTS
    if kind == "Pooler":
        cluster = (spec.get("cluster") or {}).get("name", "")
        template = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        labels = {
            **template,
            **common,
            "cnpg.io/poolerName": name,
            "cnpg.io/podRole": "pooler",
            "cnpg.io/cluster": cluster,
            "app.kubernetes.io/instance": cluster,
            "app.kubernetes.io/component": "pooler",
        }
        return labels, set(CNPG_POOLER_PORTS.values()), CNPG_POOLER_PORTS
    return None


# --- selectors -----------------------------------------------------------------------------------------------


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    return all(_expression(e, labels) for e in selector.get("matchExpressions") or [])


def _expression(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    raise ValueError(f"unknown label selector operator {operator!r}")


# --- policies ------------------------------------------------------------------------------------------------


def _policies(manifests: Iterable[dict]) -> list[dict]:
    return [m for m in manifests if m.get("kind") == "NetworkPolicy"]


def _types(spec: dict) -> set[str]:
    declared = spec.get("policyTypes")
    if declared:
        return set(declared)
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def _governing(policies: list[dict], endpoint: Endpoint, direction: str) -> list[dict]:
    """The specs of the policies isolating ``endpoint`` for ``direction``; empty: not isolated."""
    if not isinstance(endpoint, Workload):
        return []
    return [
        p["spec"]
        for p in policies
        if p["metadata"].get("namespace", "default") == endpoint.namespace
        and direction in _types(p["spec"])
        and matches(p["spec"].get("podSelector"), endpoint.labels)
    ]


def _admits(
    specs: list[dict], direction: str, subject: Endpoint, peer: Endpoint, dst: Endpoint, port: int, protocol: str
) -> bool:
    """Whether the policies isolating ``subject`` (if any) let a connection with ``peer`` to dst:port through."""
    if not specs:
        return True
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    return any(
        _peers_match(rule.get(peers_key), subject.namespace, peer)
        and _ports_match(rule.get("ports"), dst, port, protocol)
        for spec in specs
        for rule in spec.get(rules_key) or []
    )


def _peers_match(peers: list[dict] | None, namespace: str, endpoint: Endpoint) -> bool:
    return not peers or any(_peer_matches(peer, namespace, endpoint) for peer in peers)


def _peer_matches(peer: dict, namespace: str, endpoint: Endpoint) -> bool:
    if "ipBlock" in peer:
        return isinstance(endpoint, IP) and _in_block(peer["ipBlock"], endpoint.network)
    pods, spaces = peer.get("podSelector"), peer.get("namespaceSelector")
    if not isinstance(endpoint, Workload) or (pods is None and spaces is None):
        return False
    in_scope = endpoint.namespace == namespace if spaces is None else matches(spaces, endpoint.namespace_labels)
    return in_scope and matches(pods, endpoint.labels)


def _in_block(block: dict, network: Network) -> bool:
    """Whether some address of ``network`` is in the block's cidr and in none of its excepts."""
    cidr = ipaddress.ip_network(block["cidr"], strict=False)
    if cidr.version != network.version or not cidr.overlaps(network):
        return False
    left = [network if network.subnet_of(cidr) else cidr]
    for hole in block.get("except") or []:
        left = [piece for net in left for piece in _without(net, ipaddress.ip_network(hole, strict=False))]
    return bool(left)


def _without(network: Network, hole: Network) -> list[Network]:
    if hole.version != network.version or not network.overlaps(hole):
        return [network]
    return [] if network.subnet_of(hole) else list(network.address_exclude(hole))


def _ports_match(ports: list[dict] | None, dst: Endpoint, port: int, protocol: str) -> bool:
    return not ports or any(_port_matches(entry, dst, port, protocol) for entry in ports)


def _port_matches(entry: dict, dst: Endpoint, port: int, protocol: str) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    wanted = entry.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        return isinstance(dst, Workload) and dst.port_names.get(wanted) == (protocol, port)
    return wanted <= port <= entry.get("endPort", wanted)


# --- verdicts ------------------------------------------------------------------------------------------------


def allowed(policies: Iterable[dict], src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
    policies = _policies(policies)
    return _admits(_governing(policies, src, "Egress"), "Egress", src, dst, dst, port, protocol) and _admits(
        _governing(policies, dst, "Ingress"), "Ingress", dst, src, dst, port, protocol
    )


def flows(
    manifests: Iterable[dict], extra: Iterable[Endpoint] = (), probes: Iterable[Port] = ()
) -> set[tuple[str, str, str, int]]:
    manifests = list(manifests)
    policies, endpoints, probes = _policies(manifests), [*workloads(manifests), *extra], set(probes)
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ValueError(f"endpoint names must be unique: {sorted(n for n in set(names) if names.count(n) > 1)}")
    egress = [_governing(policies, e, "Egress") for e in endpoints]
    ingress = [_governing(policies, e, "Ingress") for e in endpoints]
    return {
        (src.name, dst.name, protocol, port)
        for src, out in zip(endpoints, egress)
        for dst, into in zip(endpoints, ingress)
        if not (isinstance(src, IP) and isinstance(dst, IP))
        for protocol, port in dst.ports | probes
        if _admits(out, "Egress", src, dst, dst, port, protocol)
        and _admits(into, "Ingress", dst, src, dst, port, protocol)
    }
