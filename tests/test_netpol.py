"""The NetworkPolicy evaluator (tests/netpol.py) on small hand-written policies, then on the rendered stacks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from netpol import (
    CNPG_OPERATOR,
    INGRESS_NGINX,
    INTERNET,
    KUBE_DNS,
    PROMETHEUS,
    RKE2_INGRESS_NGINX,
    Workload,
    allowed,
    external,
    flows,
    ip,
    load,
    matches,
    workloads,
)

RENDERED = Path(__file__).resolve().parents[1] / "infra" / "rendered"
STACKS = Path(__file__).resolve().parents[1] / "stacks"

WEB = Workload("web", "shop", {"app": "web"}, {("TCP", 8080)}, {"http": ("TCP", 8080)})
API = Workload("api", "shop", {"app": "api", "tier": "backend"}, {("TCP", 9000)}, {"http": ("TCP", 9000)})
DB = Workload("db", "shop", {"app": "db", "tier": "backend"}, {("TCP", 5432)})
# Same pod labels as WEB, other namespaces: one labelled team=ops, one not.
OPS_WEB = Workload("ops-web", "ops", {"app": "web"}, namespace_labels={"team": "ops"})
OPS_API = Workload("ops-api", "ops", {"app": "api"}, namespace_labels={"team": "ops"})
LAB_WEB = Workload("lab-web", "lab", {"app": "web"})


def policy(spec: dict, namespace: str = "shop", name: str = "p") -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def only(app: str) -> dict:
    return {"matchLabels": {"app": app}}


def ingress_from(peers: list[dict], to: str = "api") -> list[dict]:
    return [policy({"podSelector": only(to), "ingress": [{"from": peers}]})]


def test_without_policies_everything_flows():
    for src, dst in [(WEB, API), (LAB_WEB, DB), (ip("203.0.113.9/32"), API), (DB, ip("0.0.0.0/0"))]:
        assert allowed([], src, dst, 12345)
        assert allowed([], src, dst, 53, "UDP")


def test_a_pod_is_isolated_only_when_a_policy_of_its_namespace_selects_it():
    deny_db = [policy({"podSelector": only("db"), "policyTypes": ["Ingress"]})]
    assert not allowed(deny_db, API, DB, 5432)
    assert not allowed(deny_db, OPS_API, DB, 5432)
    assert allowed(deny_db, WEB, API, 9000)  # api is not selected
    assert allowed(deny_db, DB, API, 9000)  # db is isolated for ingress only
    elsewhere = [policy({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, namespace="lab")]
    assert allowed(elsewhere, WEB, API, 9000)  # a policy in another namespace does not isolate shop's pods
    assert not allowed(elsewhere, WEB, LAB_WEB, 8080)
    assert not allowed(elsewhere, LAB_WEB, WEB, 8080)


def test_default_policy_types():
    ingress_only = [policy({"podSelector": {}, "ingress": [{"from": [{"podSelector": only("web")}]}]})]
    assert allowed(ingress_only, WEB, API, 9000)
    assert not allowed(ingress_only, DB, API, 9000)  # isolated for ingress...
    assert allowed(ingress_only, API, LAB_WEB, 8080)  # ...but not for egress: there is no egress section
    empty_egress = [policy({"podSelector": {}, "ingress": [{}], "egress": []})]
    assert allowed(empty_egress, API, LAB_WEB, 8080)  # an empty egress section does not add Egress
    anywhere_8080 = {"to": [{"namespaceSelector": {}}], "ports": [{"port": 8080}]}
    with_egress = [policy({"podSelector": {}, "egress": [anywhere_8080]})]
    assert allowed(with_egress, API, LAB_WEB, 8080)
    assert not allowed(with_egress, API, LAB_WEB, 8081)  # egress rules: Egress is added...
    assert not allowed(with_egress, WEB, API, 9000)  # ...and Ingress always is, here with no rule at all
    egress_declared = [
        policy({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{"ports": [{"port": 1}]}], "egress": [{}]})
    ]
    assert allowed(egress_declared, WEB, API, 9000)  # ingress rules of an Egress-only policy are ignored


def test_empty_rule_admits_every_peer_and_port():
    everything = ingress_from([])
    for src in (WEB, LAB_WEB, ip("198.51.100.1/32")):
        assert allowed(everything, src, API, 9000)
        assert allowed(everything, src, API, 53, "UDP")


def test_pod_and_namespace_selectors_in_one_peer_must_both_match():
    both = ingress_from([{"namespaceSelector": {"matchLabels": {"team": "ops"}}, "podSelector": only("web")}])
    assert allowed(both, OPS_WEB, API, 9000)
    assert not allowed(both, OPS_API, API, 9000)  # right namespace, wrong pod
    assert not allowed(both, WEB, API, 9000)  # right pod, wrong namespace
    assert not allowed(both, LAB_WEB, API, 9000)


def test_separate_peers_add_up():
    either = ingress_from([{"namespaceSelector": {"matchLabels": {"team": "ops"}}}, {"podSelector": only("web")}])
    assert allowed(either, OPS_API, API, 9000)  # any pod of an ops namespace
    assert allowed(either, OPS_WEB, API, 9000)
    assert allowed(either, WEB, API, 9000)  # web in the policy's own namespace
    assert not allowed(either, LAB_WEB, API, 9000)  # a podSelector alone means the policy's namespace
    assert not allowed(either, DB, API, 9000)
    assert not allowed(either, ip("0.0.0.0/0"), API, 9000)


def test_namespaces_carry_their_name_label():
    by_name = ingress_from([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "lab"}}}])
    assert allowed(by_name, LAB_WEB, API, 9000)
    assert not allowed(by_name, OPS_WEB, API, 9000)
    all_namespaces = ingress_from([{"namespaceSelector": {}}])
    assert allowed(all_namespaces, LAB_WEB, API, 9000) and allowed(all_namespaces, WEB, API, 9000)
    assert not allowed(all_namespaces, ip("10.0.0.1/32"), API, 9000)  # selectors never match IPs


def test_ip_block_with_exceptions():
    block = {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32", "10.0.0.0/8"]}}
    egress = [policy({"podSelector": only("web"), "policyTypes": ["Egress"], "egress": [{"to": [block]}]})]
    assert allowed(egress, WEB, ip("0.0.0.0/0"), 443)  # some of the internet is reachable
    assert allowed(egress, WEB, ip("93.184.216.34/32"), 443)
    assert not allowed(egress, WEB, ip("169.254.169.254/32"), 80)
    assert not allowed(egress, WEB, ip("10.1.2.0/24"), 443)
    assert not allowed(egress, WEB, ip("::/0"), 443)  # an IPv4 block says nothing of IPv6
    assert not allowed(egress, WEB, API, 9000)  # pods are never taken to match an ipBlock
    ingress = ingress_from([{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}}])
    assert allowed(ingress, ip("203.0.113.7/32"), API, 9000)
    assert allowed(ingress, ip("0.0.0.0/0"), API, 9000)  # an IP endpoint matches if some of its addresses do
    assert not allowed(ingress, ip("203.0.113.200/32"), API, 9000)
    assert not allowed(ingress, ip("198.51.100.1/32"), API, 9000)
    assert not allowed(ingress, WEB, API, 9000)


def test_named_ports_resolve_against_the_destination():
    by_name = [policy({"podSelector": only("api"), "ingress": [{"ports": [{"port": "http", "protocol": "TCP"}]}]})]
    assert allowed(by_name, WEB, API, 9000)
    assert not allowed(by_name, WEB, API, 8080)  # the source's "http" is not the destination's
    assert not allowed(by_name, WEB, API, 9000, "UDP")
    egress = [
        policy({"podSelector": only("web"), "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "http"}]}]})
    ]
    assert allowed(egress, WEB, API, 9000)
    assert not allowed(egress, WEB, API, 8080)
    assert not allowed(egress, WEB, DB, 5432)  # db has no port named http
    assert not allowed(egress, WEB, ip("0.0.0.0/0"), 80)  # nor has an IP


def test_port_ranges_and_protocols():
    ranged = [
        policy(
            {"podSelector": only("api"), "ingress": [{"ports": [{"port": 8000, "endPort": 8100}, {"protocol": "UDP"}]}]}
        )
    ]
    assert allowed(ranged, WEB, API, 8000) and allowed(ranged, WEB, API, 8042) and allowed(ranged, WEB, API, 8100)
    assert not allowed(ranged, WEB, API, 7999) and not allowed(ranged, WEB, API, 8101)
    assert allowed(ranged, WEB, API, 53, "UDP")  # a protocol without a port: all its ports
    assert not allowed(ranged, WEB, API, 53)  # TCP is the default protocol of the first entry only
    assert not allowed(ranged, WEB, API, 8042, "SCTP")


def test_match_expressions():
    labels = {"app": "api", "tier": "backend"}
    assert matches({"matchExpressions": [{"key": "app", "operator": "In", "values": ["api", "web"]}]}, labels)
    assert not matches({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}, labels)
    assert matches({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, labels)
    assert not matches({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["backend"]}]}, labels)
    assert matches({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, labels)
    assert not matches({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, labels)
    assert matches({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, labels)
    assert not matches({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, labels)
    assert not matches(
        {
            "matchLabels": {"app": "api"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend"]}],
        },
        labels,
    )
    assert matches({}, labels) and matches(None, {})
    backend = [
        policy(
            {
                "podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
                "ingress": [
                    {
                        "from": [
                            {
                                "podSelector": {
                                    "matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]
                                }
                            }
                        ]
                    }
                ],
            }
        )
    ]
    assert allowed(backend, WEB, DB, 5432)
    assert not allowed(backend, DB, API, 9000)
    assert allowed(backend, DB, WEB, 8080)  # web has no tier label: not selected


def test_an_egress_isolated_source_needs_an_egress_rule():
    deny_out = [policy({"podSelector": only("web"), "policyTypes": ["Egress"]})]
    assert not allowed(deny_out, WEB, LAB_WEB, 8080)  # the destination has no policy at all
    assert not allowed(deny_out, WEB, ip("0.0.0.0/0"), 443)
    assert allowed(deny_out, API, WEB, 8080)  # web is not isolated for ingress
    opened = deny_out + [
        policy(
            {
                "podSelector": only("web"),
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"namespaceSelector": {}, "podSelector": only("web")}], "ports": [{"port": 8080}]}],
            },
            name="q",
        )
    ]
    assert allowed(opened, WEB, LAB_WEB, 8080)  # policies add up
    assert not allowed(opened, WEB, LAB_WEB, 8081)


def test_both_directions_are_needed():
    out = policy(
        {
            "podSelector": only("web"),
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": only("api")}], "ports": [{"port": 9000}]}],
        },
        name="out",
    )
    into = policy(
        {
            "podSelector": only("api"),
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": only("web")}], "ports": [{"port": 9000}]}],
        },
        name="in",
    )
    deny_api = policy({"podSelector": only("api"), "policyTypes": ["Ingress"]}, name="deny-api")
    deny_web = policy({"podSelector": only("web"), "policyTypes": ["Egress"]}, name="deny-web")
    assert allowed([out, into], WEB, API, 9000)
    assert not allowed([out, deny_api], WEB, API, 9000)  # egress lets it out, ingress does not let it in
    assert not allowed([deny_web, into], WEB, API, 9000)  # ingress would, egress does not
    assert not allowed([out, into], WEB, API, 9001)
    assert allowed([out, into], API, WEB, 8080)  # neither policy governs this direction


def test_workloads_from_manifests():
    manifests = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "ops"}}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "c",
                                "ports": [
                                    {"containerPort": 8080, "name": "http"},
                                    {"containerPort": 53, "protocol": "UDP"},
                                ],
                            },
                        ]
                    },
                }
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": "shop"},
            "spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "batch"}}, "spec": {}}}}},
        },
        {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "pg", "namespace": "shop"}},
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Pooler",
            "metadata": {"name": "pg-rw", "namespace": "shop"},
            "spec": {"cluster": {"name": "pg"}},
        },
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "ScheduledBackup",
            "metadata": {"name": "b", "namespace": "shop"},
        },
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"}},
    ]
    found = {w.name: w for w in workloads(manifests)}
    assert sorted(found) == ["nightly", "pg", "pg-initdb", "pg-rw", "web"]
    web = found["web"]
    assert (web.namespace, web.labels, web.ports) == ("shop", {"app": "web"}, {("TCP", 8080), ("UDP", 53)})
    assert web.port_names == {"http": ("TCP", 8080)}
    assert web.namespace_labels == {"team": "ops", "kubernetes.io/metadata.name": "shop"}
    assert found["nightly"].labels == {"app": "batch"} and not found["nightly"].ports
    assert {"cnpg.io/cluster": "pg", "cnpg.io/podRole": "instance"}.items() <= found["pg"].labels.items()
    assert {("TCP", 5432), ("TCP", 9187)} <= found["pg"].ports
    assert found["pg-rw"].labels["cnpg.io/poolerName"] == "pg-rw" and ("TCP", 5432) in found["pg-rw"].ports
    assert found["pg-rw"].labels["cnpg.io/podRole"] == "pooler"
    assert found["pg-initdb"].labels["cnpg.io/jobRole"] == "initdb" and not found["pg-initdb"].ports
    restored = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "pg2"},
        "spec": {"bootstrap": {"recovery": {"source": "pg"}}},
    }
    job = {w.name: w for w in workloads([restored])}["pg2-full-recovery"]
    assert job.labels["cnpg.io/cluster"] == "pg2" and job.labels["cnpg.io/jobRole"] == "full-recovery"


def test_flows_lists_every_allowed_pair_on_declared_and_probed_ports():
    manifests = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "api", "namespace": "shop"},
            "spec": {
                "template": {
                    "metadata": {"labels": {"app": "api"}},
                    "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 9000}]}]},
                }
            },
        },
        policy(
            {
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}]}],
                "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]}],
            }
        ),
    ]
    ops = external("ops", "ops", {"app": "x"}, {"http": ("TCP", 80)}, namespace_labels={"team": "ops"})
    internet = ip("0.0.0.0/0", ("TCP", 443), name="internet")
    assert flows(manifests, extra=[ops, internet]) == {
        ("ops", "api", "TCP", 9000),
        ("ops", "ops", "TCP", 80),
        ("ops", "internet", "TCP", 443),
        ("api", "internet", "TCP", 443),
        ("internet", "ops", "TCP", 80),
    }
    probed = flows(manifests, extra=[ops, internet], probes=[("TCP", 443)])
    assert ("ops", "api", "TCP", 443) in probed and ("api", "ops", "TCP", 443) not in probed
    with pytest.raises(ValueError, match="unique"):
        flows(manifests, extra=[external("api", "elsewhere", {})])


# --- the rendered stacks -------------------------------------------------------------------------------------

# Pods of another namespace that copy the labels the policies look for: only the namespace tells them apart.
IMPOSTOR_PROMETHEUS = external("impostor-prometheus", "default", {"app.kubernetes.io/name": "prometheus"})
IMPOSTOR_NGINX = external("impostor-nginx", "default", {"app.kubernetes.io/name": "ingress-nginx"})
IMPOSTOR_RKE2_NGINX = external("impostor-rke2-nginx", "default", {"app.kubernetes.io/name": "rke2-ingress-nginx"})
OTHERS = [PROMETHEUS, KUBE_DNS, CNPG_OPERATOR, INTERNET, IMPOSTOR_PROMETHEUS, IMPOSTOR_NGINX, IMPOSTOR_RKE2_NGINX]


def ingress_controller(stack: str):
    """The cluster's ingress controller: RKE2's own on the clusters the OpenStack layer provisions."""
    document = yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text())
    cluster = document["config"]["eolake:platform"].get("cluster") or {}
    return RKE2_INGRESS_NGINX if cluster.get("kind") == "openstack" else INGRESS_NGINX


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_rendered_stack_flows(stack):
    manifests = load(RENDERED / stack)
    pods = {w.name: w for w in workloads(manifests)}
    poolers = [m["metadata"]["name"] for m in manifests if m["kind"] == "Pooler"]
    assert "catalog" in pods and poolers, f"{stack}: expected the catalog and a database pooler"
    allowed_flows = flows(manifests, extra=[ingress_controller(stack), *OTHERS])
    catalog_http = pods["catalog"].port_names["http"]

    assert ("ingress-nginx", "catalog", *catalog_http) in allowed_flows
    assert ("prometheus", "catalog", *catalog_http) in allowed_flows
    assert any(("catalog", pooler, "TCP", 5432) in allowed_flows for pooler in poolers)
    for name in pods:  # every pod of the stack resolves names
        assert (name, "kube-dns", "UDP", 53) in allowed_flows, f"{stack}: {name} cannot reach kube-dns"
    reached_from_outside = {
        (src, dst)
        for src, dst, _, _ in allowed_flows
        if dst in pods and src in {"internet", "impostor-prometheus", "impostor-nginx", "impostor-rke2-nginx"}
    }
    assert not reached_from_outside, f"{stack}: reachable from the internet or an arbitrary namespace"
