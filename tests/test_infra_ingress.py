"""The ingress choice (kubernetes.ingress.kind): ingress-nginx's Ingress or a Gateway API HTTPRoute, with the same
path layout (one base URL, one prefix per service), TLS, and the proxies admitted by the NetworkPolicies."""

from __future__ import annotations

import pytest
from infra_program import program, variant, write_stack

from eolake_spec import SpecError, load_stack


def ingress_paths(p) -> dict[str, tuple[str, int]]:
    rules = p.one("Ingress", "eolake")["spec"]["rules"]
    ports = {s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in p.of_kind("Service")}
    return {
        path["path"]: (path["backend"]["service"]["name"], ports[path["backend"]["service"]["name"]])
        for rule in rules
        for path in rule["http"]["paths"]
    }


def route_paths(p) -> dict[str, tuple[str, int]]:
    paths = {}
    for rule in p.one("HTTPRoute", "eolake")["spec"]["rules"]:
        (match,) = rule["matches"]
        (backend,) = rule["backendRefs"]
        assert match["path"]["type"] == "PathPrefix"
        paths[match["path"]["value"]] = (backend["name"], backend["port"])
    return paths


@pytest.mark.parametrize("stack,label", [("prod", "prod-gateway"), ("staging", "staging-shared-gateway")])
def test_both_kinds_serve_the_same_paths(stack, label):
    nginx, gateway = program(stack), program(variant(label))
    assert route_paths(gateway) == ingress_paths(nginx)
    assert set(route_paths(gateway)) == {s.path for s in load_stack(stack).enabled_services.values()}
    assert gateway.one("HTTPRoute", "eolake")["spec"]["hostnames"] == [load_stack(stack).base_url.host]
    assert not gateway.of_kind("Ingress") and not nginx.of_kind("HTTPRoute") and not nginx.of_kind("Gateway")


def test_own_gateway_terminates_tls_and_redirects_http():
    p, platform = program(variant("prod-gateway")), load_stack("prod")
    host, ingress = platform.base_url.host, platform.kubernetes.ingress
    gateway = p.one("Gateway", "eolake")
    assert gateway["spec"]["gatewayClassName"] == "eg"
    assert gateway["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == ingress.tls_issuer
    listeners = {listener["name"]: listener for listener in gateway["spec"]["listeners"]}
    https = listeners["https"]
    assert (https["protocol"], https["port"], https["hostname"]) == ("HTTPS", 443, host)
    assert https["tls"] == {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": ingress.tls_secret}]}
    assert (listeners["http"]["protocol"], listeners["http"]["port"]) == ("HTTP", 80)
    (parent,) = p.one("HTTPRoute", "eolake")["spec"]["parentRefs"]
    assert (parent["name"], parent["namespace"], parent["sectionName"]) == ("eolake", "eolake", "https")
    redirect = p.one("HTTPRoute", "eolake-redirect")["spec"]
    assert redirect["parentRefs"][0]["sectionName"] == "http"
    assert redirect["rules"] == [
        {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}
    ]
    route = p.recorded("HTTPRoute", "eolake")
    assert p.recorded("Gateway", "eolake").urn in route.dependencies


def test_shared_gateway_is_only_referenced():
    p = program(variant("staging-shared-gateway"))
    assert not p.of_kind("Gateway") and [r["metadata"]["name"] for r in p.of_kind("HTTPRoute")] == ["eolake"]
    (parent,) = p.one("HTTPRoute", "eolake")["spec"]["parentRefs"]
    assert (parent["name"], parent["namespace"], parent["sectionName"]) == ("public", "gateways", "https")


@pytest.mark.parametrize(
    "label,namespace,labels",
    [
        ("prod-gateway", "envoy-gateway-system", None),
        ("staging-shared-gateway", "istio-ingress", {"istio": "ingressgateway"}),
    ],
)
def test_policies_admit_the_gateway_proxies(label, namespace, labels):
    p = program(variant(label))
    for name in p.context.services:
        (proxies, _) = p.one("NetworkPolicy", name)["spec"]["ingress"][0]["from"]
        assert proxies["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
        assert proxies.get("podSelector") == ({"matchLabels": labels} if labels else None)


def test_gateway_needs_the_proxies_namespace(tmp_path):
    def edit(platform):
        platform["kubernetes"]["ingress"] = {"kind": "gateway", "gateway": {"class_name": "eg"}}

    with pytest.raises(SpecError, match="controller_namespace") as error:
        load_stack(write_stack(tmp_path, "prod", edit))
    assert "kubernetes.ingress" in str(error.value)
