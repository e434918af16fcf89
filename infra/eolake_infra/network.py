"""NetworkPolicies: who may talk to whom. The namespace denies everything else (see program.py); each service
allows exactly the manifests' `calls` graph plus the platform's fixed flows (ingress, Prometheus scrape, DNS, the
database pooler, storage, external providers, the trace collector, the identity provider, and the web view's
console reading Prometheus and Alertmanager)."""

from __future__ import annotations

from urllib.parse import urlsplit

DATABASE_CLIENT = "eolake.io/database-client"  # pod label the pooler admits


def ingress_proxies(ctx) -> dict:
    """The pods that forward public requests: ingress-nginx's controller, or the Gateway's proxies (the spec's
    kubernetes.ingress.controller_namespace and controller_labels)."""
    settings = ctx.k8s.ingress
    peer: dict = {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": settings.proxy_namespace}}}
    if settings.proxy_labels:
        peer["pod_selector"] = {"match_labels": settings.proxy_labels}
    return peer


def prometheus(monitoring_namespace: str) -> dict:
    return {
        "namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": monitoring_namespace}},
        "pod_selector": {"match_labels": {"app.kubernetes.io/name": "prometheus"}},
    }


def observers(monitoring_namespace: str) -> dict:
    """What the web view's operations console reads: kube-prometheus-stack's Prometheus and Alertmanager."""
    return {
        "to": [
            {
                "namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": monitoring_namespace}},
                "pod_selector": {
                    "match_expressions": [
                        {"key": "app.kubernetes.io/name", "operator": "In", "values": ["alertmanager", "prometheus"]}
                    ]
                },
            }
        ],
        "ports": tcp(9090, 9093),
    }


def pods(labels: dict[str, str]) -> dict:
    return {"pod_selector": {"match_labels": labels}}


def tcp(*ports: int | str) -> list[dict]:
    return [{"protocol": "TCP", "port": p} for p in ports]


# Outside the pod network (S3, providers, the identity provider), never the cloud's metadata service.
OUTSIDE = {"ip_block": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}


def outside(*ports: int) -> dict:
    return {"to": [OUTSIDE], "ports": tcp(*sorted(set(ports)))}


def url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def service_policy(ctx, name: str, labels: dict[str, str]) -> dict:
    m = ctx.manifest(name)
    callers = [ctx.labels(other) for other in sorted(ctx.services) if name in ctx.manifest(other).calls]
    ingress = [{"from": [ingress_proxies(ctx), prometheus(ctx.k8s.monitoring_namespace)], "ports": tcp(m.port)}]
    if callers:
        ingress.append({"from": [pods(c) for c in callers], "ports": tcp(m.port)})
    egress = [
        {"to": [pods(ctx.labels(callee))], "ports": tcp(ctx.manifest(callee).port)}
        for callee in m.calls
        if callee in ctx.services
    ]
    if m.database:
        egress.append(database(ctx, reads=ctx.platform.reads_from_replica(name)))
    egress += fixed_egress(ctx, name)
    return {
        "pod_selector": {"match_labels": labels},
        "policy_types": ["Ingress", "Egress"],
        "ingress": ingress,
        "egress": egress,
    }


def database(ctx, reads: bool = False) -> dict:
    """The pooler; `reads`: and the replicas' pooler (a service reading from them)."""
    poolers = [ctx.pooler, *([ctx.read_pooler] if reads and ctx.read_pooler else [])]
    return {"to": [pods({"cnpg.io/poolerName": name}) for name in poolers], "ports": tcp(5432)}


def fixed_egress(ctx, name: str) -> list[dict]:
    """Flows out of the namespace a service needs: traces, storage, providers, the identity provider."""
    platform, m, rules = ctx.platform, ctx.manifest(name), []
    otlp = platform.observability.otlp_endpoint
    if otlp:
        rules.append(collector(otlp, ctx.namespace))
    if name == "web" and ctx.observers:
        rules.append(observers(ctx.k8s.monitoring_namespace))
    ports = []
    if "storage" in m.secrets and platform.storage.kind == "s3":
        ports.append(url_port(platform.storage.endpoint or "https://s3.amazonaws.com"))
    if name == "search":
        ports += [url_port(p.url) for p in platform.providers if p.enabled and p.url and "://" in p.url]
    if "amqp" in m.secrets and platform.events:  # the events broker, run outside the platform
        ports.append(platform.events.port or 5672)
    if platform.auth.oidc_issuer:  # the JWKS of the identity provider
        ports.append(url_port(platform.auth.oidc_jwks_url or platform.auth.oidc_issuer))
    if ports:
        rules.append(outside(*ports))
    return rules


def collector(otlp: str, namespace: str) -> dict:
    """The trace collector: `<service>.<namespace>[.svc…]` is a Service in that namespace; anything else is
    outside the cluster."""
    labels = (urlsplit(otlp).hostname or "").split(".")
    port = url_port(otlp)
    if len(labels) >= 2 and (len(labels) == 2 or labels[2] == "svc"):
        return {
            "to": [{"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": labels[1]}}}],
            "ports": tcp(port),
        }
    if len(labels) == 1:
        return {
            "to": [{"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": namespace}}}],
            "ports": tcp(port),
        }
    return outside(port)
