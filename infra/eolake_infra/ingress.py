"""One Ingress for the one base URL: a path prefix per service, as the local gateway and the on-prem proxy do.

Annotations are ingress-nginx's (kubernetes/ingress-nginx): TLS from cert-manager, body size and per-client-IP
rate limits. Services build links from their public URL (ConfigMap), never from the Host header.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from eolake_infra.config import Context


def ingress(ctx: Context, opts: pulumi.ResourceOptions) -> k8s.networking.v1.Ingress:
    settings = ctx.k8s.ingress
    # Longest prefix first, so that the web view's "/" is the fallback (nginx matches longest anyway).
    names = sorted(ctx.services, key=lambda n: (-len(ctx.services[n].path), n))
    paths = [{"path": ctx.services[n].path, "path_type": "Prefix",
              "backend": {"service": {"name": n, "port": {"name": "http"}}}} for n in names]
    return k8s.networking.v1.Ingress("ingress", metadata={
        "name": "eolake", "namespace": ctx.namespace, "labels": {"app.kubernetes.io/part-of": "eolake"},
        "annotations": {
            "cert-manager.io/cluster-issuer": settings.tls_issuer,
            "nginx.ingress.kubernetes.io/ssl-redirect": "true",
            "nginx.ingress.kubernetes.io/proxy-body-size": settings.body_size,
            "nginx.ingress.kubernetes.io/limit-rps": str(settings.rate_limit_rps),
            "nginx.ingress.kubernetes.io/limit-burst-multiplier": "5",
        },
    }, spec={
        "ingress_class_name": settings.class_name,
        "tls": [{"hosts": [ctx.host], "secret_name": settings.tls_secret}],
        "rules": [{"host": ctx.host, "http": {"paths": paths}}],
    }, opts=opts)
