"""PostgreSQL on CloudNativePG: an HA Cluster with PostGIS, a PgBouncer Pooler, WAL archiving and backups to S3."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from eolake_infra import network
from eolake_infra.config import APP_ROLE, CLUSTER, INSTANCES, Context

OPERATOR = {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "cnpg-system"}}}
MIGRATE_LABELS = {"app.kubernetes.io/name": "migrate", "app.kubernetes.io/part-of": "eolake"}


class Database(pulumi.ComponentResource):
    def __init__(self, ctx: Context, after: list[pulumi.Resource], opts: pulumi.ResourceOptions | None = None):
        super().__init__("eolake:database:Postgres", "database", None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=after)
        pg, db = ctx.k8s.postgres, ctx.platform.database
        self.cluster = k8s.apiextensions.CustomResource(
            "database-cluster", api_version="postgresql.cnpg.io/v1", kind="Cluster",
            metadata=meta(ctx, CLUSTER), spec=cluster_spec(ctx), opts=child)
        after = pulumi.ResourceOptions(parent=self, depends_on=[*after, self.cluster])
        server = db.max_connections - db.reserved_connections
        k8s.apiextensions.CustomResource(
            "database-pooler", api_version="postgresql.cnpg.io/v1", kind="Pooler",
            metadata=meta(ctx, ctx.pooler), spec={
                "cluster": {"name": CLUSTER}, "instances": ctx.k8s.pooler.instances, "type": "rw",
                "pgbouncer": {"poolMode": "session", "parameters": {
                    "max_client_conn": str(ctx.k8s.pooler.max_client_connections),
                    "default_pool_size": str(max(1, server // ctx.k8s.pooler.instances)),
                }},
                "monitoring": {"enablePodMonitor": False},
            }, opts=after)
        if pg.backup:
            k8s.apiextensions.CustomResource(
                "database-backup", api_version="postgresql.cnpg.io/v1", kind="ScheduledBackup",
                metadata=meta(ctx, f"{CLUSTER}-daily"), spec={
                    "schedule": pg.backup.schedule, "backupOwnerReference": "self",
                    "cluster": {"name": CLUSTER}, "method": "barmanObjectStore", "immediate": True,
                }, opts=after)
        for name, spec in network_policies(ctx).items():
            k8s.networking.v1.NetworkPolicy(name, metadata=meta(ctx, name), spec=spec, opts=child)
        self.register_outputs({})


def meta(ctx: Context, name: str) -> dict:
    return {"name": name, "namespace": ctx.namespace, "labels": {"app.kubernetes.io/part-of": "eolake"}}


def cluster_spec(ctx: Context) -> dict:
    pg, db = ctx.k8s.postgres, ctx.platform.database
    spec: dict = {
        "instances": pg.instances,
        "imageName": pg.image.ref,
        "enableSuperuserAccess": True,  # the migration Job creates extensions and pgstac's roles
        "postgresql": {"parameters": {"max_connections": str(db.max_connections)}},
        "bootstrap": {"initdb": {"database": db.name, "owner": db.user, "postInitApplicationSQL": [
            "CREATE EXTENSION IF NOT EXISTS postgis", "CREATE EXTENSION IF NOT EXISTS btree_gist"]}},
        "managed": {"roles": [{"name": APP_ROLE, "ensure": "present", "login": True,
                               "passwordSecret": {"name": ctx.k8s.secrets.app_database}}]},
        "storage": {"size": pg.storage_size, **({"storageClass": pg.storage_class} if pg.storage_class else {})},
        "affinity": {"topologyKey": "kubernetes.io/hostname", "enablePodAntiAffinity": True},
        "primaryUpdateStrategy": "unsupervised",
        "monitoring": {"enablePodMonitor": ctx.k8s.releases.kube_prometheus_stack},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    }
    if pg.backup:
        credentials = {"name": pg.backup.credentials_secret}
        store: dict = {
            "destinationPath": pg.backup.destination,
            "s3Credentials": {"accessKeyId": {**credentials, "key": "ACCESS_KEY_ID"},
                              "secretAccessKey": {**credentials, "key": "ACCESS_SECRET_KEY"}},
            "wal": {"compression": "gzip"}, "data": {"compression": "gzip"},
        }
        if pg.backup.endpoint:
            store["endpointURL"] = pg.backup.endpoint
        spec["backup"] = {"barmanObjectStore": store, "retentionPolicy": pg.backup.retention}
    return spec


def network_policies(ctx: Context) -> dict[str, dict]:
    # Pooler pods carry cnpg.io/cluster too: the instances' policy selects instances only.
    instances = INSTANCES
    pooler = {"cnpg.io/poolerName": ctx.pooler}
    api_and_storage = network.outside(443, 6443)  # the Kubernetes API (the instance manager) and S3 backups
    prometheus = network.prometheus(ctx.k8s.monitoring_namespace)
    clients = network.pods({network.DATABASE_CLIENT: "true"})
    return {
        f"{CLUSTER}-netpol": {
            "pod_selector": {"match_labels": instances}, "policy_types": ["Ingress", "Egress"],
            "ingress": [
                {"from": [network.pods(pooler), network.pods(instances), network.pods(MIGRATE_LABELS)],
                 "ports": network.tcp(5432)},
                {"from": [OPERATOR], "ports": network.tcp(8000, 5432)},
                {"from": [prometheus], "ports": network.tcp(9187)},
            ],
            "egress": [{"to": [network.pods(instances)], "ports": network.tcp(5432, 8000)}, api_and_storage],
        },
        f"{ctx.pooler}-netpol": {
            "pod_selector": {"match_labels": pooler}, "policy_types": ["Ingress", "Egress"],
            "ingress": [{"from": [clients], "ports": network.tcp(5432)},
                        {"from": [prometheus], "ports": network.tcp(9127)}],
            "egress": [{"to": [network.pods(instances)], "ports": network.tcp(5432)}, api_and_storage],
        },
    }
