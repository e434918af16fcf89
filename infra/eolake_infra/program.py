"""The Pulumi program: namespace, database, migrations, one component per service, ingress, releases."""

from __future__ import annotations

from dataclasses import replace

import pulumi
import pulumi_kubernetes as k8s

from eolake_infra import network
from eolake_infra.cluster import hand_over, provision
from eolake_infra.config import Context, resolve
from eolake_infra.database import Database
from eolake_infra.ingress import ingress
from eolake_infra.migrations import Migrations
from eolake_infra.releases import releases
from eolake_infra.service import ServiceComponent
from eolake_spec import Platform


def build(platform: Platform, source: str = "the stack file") -> Context:
    """Check everything first (InfraError, nothing created), then declare the cluster layer (spec `cluster:`) and
    the platform layer on the Kubernetes provider it hands over."""
    checked = resolve(platform, source)
    cluster = provision(checked)
    ctx = replace(checked, provider=cluster.provider)
    namespace = k8s.core.v1.Namespace(
        "namespace",
        metadata={
            "name": ctx.namespace,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "app.kubernetes.io/part-of": "eolake",
            },
        },
        opts=ctx.options(),
    )
    inside = ctx.options(depends_on=[namespace])
    _namespace_policies(ctx, inside)
    _app_database_secret(ctx, inside)
    handed = hand_over(ctx, cluster.provisioned, inside) if cluster.provisioned else []
    installed = releases(ctx, ctx.options())
    database = Database(
        ctx,
        after=[namespace, *handed, *installed.monitoring_crds],  # PodMonitor needs the CRD
        opts=ctx.component_options(),
    )
    after: list[pulumi.Resource] = [namespace]
    if any(ctx.manifest(name).database for name in ctx.services):
        after.append(Migrations(ctx, after=[namespace, database.cluster], opts=ctx.component_options()).job)
    for name in sorted(ctx.services):
        ServiceComponent(
            ctx, name, after=after, opts=ctx.component_options(), monitoring_crds=installed.monitoring_crds
        )
    ingress(ctx, inside)
    return ctx


def _namespace_policies(ctx: Context, opts: pulumi.ResourceOptions) -> None:
    """Deny every flow in the namespace; each component then allows only what it needs. DNS for everyone."""
    meta = {"namespace": ctx.namespace, "labels": {"app.kubernetes.io/part-of": "eolake"}}
    k8s.networking.v1.NetworkPolicy(
        "default-deny",
        metadata={**meta, "name": "default-deny"},
        spec={"pod_selector": {}, "policy_types": ["Ingress", "Egress"]},
        opts=opts,
    )
    dns = {
        "namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "kube-system"}},
        "pod_selector": {"match_labels": {"k8s-app": "kube-dns"}},
    }
    k8s.networking.v1.NetworkPolicy(
        "allow-dns",
        metadata={**meta, "name": "allow-dns"},
        spec={
            "pod_selector": {},
            "policy_types": ["Egress"],
            "egress": [{"to": [dns], "ports": [*network.tcp(53), {"protocol": "UDP", "port": 53}]}],
        },
        opts=opts,
    )


def _app_database_secret(ctx: Context, opts: pulumi.ResourceOptions) -> None:
    """With `pulumi config set --secret eolake:appDatabasePassword …` Pulumi owns the Secret (encrypted in the
    state); without it, the Secret named kubernetes.secrets.app_database must exist (see infra/README.md)."""
    password = pulumi.Config("eolake").get_secret("appDatabasePassword")
    if password is None:
        return
    k8s.core.v1.Secret(
        "app-database-secret",
        metadata={
            "name": ctx.k8s.secrets.app_database,
            "namespace": ctx.namespace,
            "labels": {"app.kubernetes.io/part-of": "eolake", "cnpg.io/reload": "true"},
        },
        type="kubernetes.io/basic-auth",
        string_data={"username": "eolake_app", "password": password},
        opts=opts,
    )
