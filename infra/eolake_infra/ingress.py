"""The one base URL, a path prefix per service, as the local gateway and the on-prem proxy do; `kubernetes.ingress.kind`
chooses how:

- `nginx`: an Ingress for ingress-nginx (kubernetes/ingress-nginx, retired by its maintainers: prefer `gateway` for
  new clusters). Its annotations: TLS from cert-manager, HTTP redirected to HTTPS, body size and per-client-IP rate
  limits;
- `gateway`: Gateway API (gateway.networking.k8s.io/v1). An HTTPRoute with one PathPrefix rule per service,
  attached to the Gateway the spec names: created here (`gateway.class_name`: an HTTPS listener for the host with
  the certificate cert-manager issues through its Gateway support, and an HTTP listener whose only route redirects
  to HTTPS), or an existing one (its owner runs TLS and must admit routes from this namespace). Body size and rate
  limits are not part of the Gateway API: set them with your implementation's policy resources.

Services build links from their public URL (ConfigMap), never from the Host header.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from eolake_infra.config import Context

GATEWAY_API = "gateway.networking.k8s.io/v1"


def ingress(ctx: Context, opts: pulumi.ResourceOptions) -> None:
    if ctx.k8s.ingress.kind == "gateway":
        gateway_routes(ctx, opts)
    else:
        nginx_ingress(ctx, opts)


def by_longest_prefix(ctx: Context) -> list[str]:
    """Longest prefix first, so that the web view's "/" is the fallback (both matchers prefer the longest anyway)."""
    return sorted(ctx.services, key=lambda n: (-len(ctx.services[n].path), n))


def _meta(ctx: Context, name: str, **extra) -> dict:
    return {"name": name, "namespace": ctx.namespace, "labels": {"app.kubernetes.io/part-of": "eolake"}, **extra}


def nginx_ingress(ctx: Context, opts: pulumi.ResourceOptions) -> k8s.networking.v1.Ingress:
    settings = ctx.k8s.ingress
    paths = [
        {
            "path": ctx.services[n].path,
            "path_type": "Prefix",
            "backend": {"service": {"name": n, "port": {"name": "http"}}},
        }
        for n in by_longest_prefix(ctx)
    ]
    return k8s.networking.v1.Ingress(
        "ingress",
        metadata=_meta(
            ctx,
            "eolake",
            annotations={
                "cert-manager.io/cluster-issuer": settings.tls_issuer,
                "nginx.ingress.kubernetes.io/ssl-redirect": "true",
                "nginx.ingress.kubernetes.io/proxy-body-size": settings.body_size,
                "nginx.ingress.kubernetes.io/limit-rps": str(settings.rate_limit_rps),
                "nginx.ingress.kubernetes.io/limit-burst-multiplier": "5",
            },
        ),
        spec={
            "ingress_class_name": settings.class_name,
            "tls": [{"hosts": [ctx.host], "secret_name": settings.tls_secret}],
            "rules": [{"host": ctx.host, "http": {"paths": paths}}],
        },
        opts=opts,
    )


def gateway_routes(ctx: Context, opts: pulumi.ResourceOptions) -> None:
    settings, gateway = ctx.k8s.ingress, ctx.k8s.ingress.gateway
    parent = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": gateway.name,
        "namespace": gateway.namespace or ctx.namespace,
    }
    after = opts
    if gateway.class_name:
        created = k8s.apiextensions.CustomResource(
            "gateway",
            api_version=GATEWAY_API,
            kind="Gateway",
            metadata=_meta(ctx, gateway.name, annotations={"cert-manager.io/cluster-issuer": settings.tls_issuer}),
            spec={
                "gatewayClassName": gateway.class_name,
                "listeners": [
                    {
                        "name": "https",
                        "protocol": "HTTPS",
                        "port": 443,
                        "hostname": ctx.host,
                        "tls": {
                            "mode": "Terminate",
                            "certificateRefs": [{"kind": "Secret", "name": settings.tls_secret}],
                        },
                        "allowedRoutes": {"namespaces": {"from": "Same"}},
                    },
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": 80,
                        "hostname": ctx.host,
                        "allowedRoutes": {"namespaces": {"from": "Same"}},
                    },
                ],
            },
            opts=opts,
        )
        after = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[created]))
        k8s.apiextensions.CustomResource(
            "gateway-redirect",
            api_version=GATEWAY_API,
            kind="HTTPRoute",
            metadata=_meta(ctx, "eolake-redirect"),
            spec={
                "parentRefs": [{**parent, "sectionName": "http"}],
                "hostnames": [ctx.host],
                "rules": [
                    {
                        "filters": [
                            {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
                        ]
                    }
                ],
            },
            opts=after,
        )
        parent["sectionName"] = "https"
    elif gateway.section:
        parent["sectionName"] = gateway.section
    rules = [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": ctx.services[n].path}}],
            "backendRefs": [{"name": n, "port": ctx.manifest(n).port}],
        }
        for n in by_longest_prefix(ctx)
    ]
    k8s.apiextensions.CustomResource(
        "route",
        api_version=GATEWAY_API,
        kind="HTTPRoute",
        metadata=_meta(ctx, "eolake"),
        spec={"parentRefs": [parent], "hostnames": [ctx.host], "rules": rules},
        opts=after,
    )
