"""PostgreSQL on CloudNativePG: an HA Cluster with PostGIS, a PgBouncer Pooler, WAL archiving and backups to S3.

The Cluster is named by the spec (kubernetes.postgres.cluster_name). A point-in-time recovery is a stack change: a
new name and `recovery` (the old cluster, a target time) give a new Cluster bootstrapped from the old one's base
backups and WAL archive (`bootstrap.recovery` from an `externalClusters` entry with the same barmanObjectStore); the
pooler, the migration Jobs and every NetworkPolicy follow the name. Backups use the in-tree barmanObjectStore of
CloudNativePG 1.29 (deprecated since 1.26, removed in 1.31, where the Barman Cloud plugin replaces it).
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from eolake_infra import network, pods
from eolake_infra.config import APP_ROLE, DATABASE_LABEL, Context

OPERATOR = {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "cnpg-system"}}}
CREATE_TIMEOUT = 1800
RECOVERY_TIMEOUT = 6 * 3600  # restoring a base backup and replaying a day of WAL
MIGRATE_LABELS = {"app.kubernetes.io/name": "migrate", "app.kubernetes.io/part-of": "eolake"}


class Database(pulumi.ComponentResource):
    def __init__(self, ctx: Context, after: list[pulumi.Resource], opts: pulumi.ResourceOptions | None = None):
        super().__init__("eolake:database:Postgres", "database", None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=after)
        pg, db = ctx.k8s.postgres, ctx.platform.database
        # Pulumi waits until the Cluster is Ready (a recovery can take hours) before the pooler and the migrations;
        # a Cluster is never deleted by Pulumi: after a recovery, the old one stays until you delete it yourself.
        wait = {
            "pulumi.com/waitFor": "condition=Ready",
            "pulumi.com/timeoutSeconds": str(RECOVERY_TIMEOUT if pg.recovery else CREATE_TIMEOUT),
        }
        self.cluster = k8s.apiextensions.CustomResource(
            "database-cluster",
            api_version="postgresql.cnpg.io/v1",
            kind="Cluster",
            metadata={**meta(ctx, ctx.cluster), "annotations": wait},
            spec=cluster_spec(ctx),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(retain_on_delete=True)),
        )
        after = pulumi.ResourceOptions(parent=self, depends_on=[*after, self.cluster])
        server = db.max_connections - db.reserved_connections
        # CloudNativePG (1.29.2+) refuses to change a Pooler's cluster: after a recovery it is replaced, under the
        # same name (the Service the services connect to), while the services are scaled down.
        switch = pulumi.ResourceOptions(replace_on_changes=["spec.cluster.name"], delete_before_replace=True)
        for name, kind in ctx.poolers.items():
            suffix = "" if kind == "rw" else f"-{kind}"
            k8s.apiextensions.CustomResource(
                f"database-pooler{suffix}",
                api_version="postgresql.cnpg.io/v1",
                kind="Pooler",
                metadata=meta(ctx, name),
                spec=pooler_spec(ctx, kind, server),
                opts=pulumi.ResourceOptions.merge(after, switch),
            )
        if pg.backup:
            k8s.apiextensions.CustomResource(
                "database-backup",
                api_version="postgresql.cnpg.io/v1",
                kind="ScheduledBackup",
                metadata=meta(ctx, f"{ctx.cluster}-daily"),
                spec={
                    "schedule": pg.backup.schedule,
                    "backupOwnerReference": "self",
                    "cluster": {"name": ctx.cluster},
                    "method": "barmanObjectStore",
                    "immediate": True,
                },
                opts=after,
            )
        for name, spec in network_policies(ctx).items():
            k8s.networking.v1.NetworkPolicy(name, metadata=meta(ctx, name), spec=spec, opts=child)
        self.register_outputs({})


def pooler_spec(ctx: Context, kind: str, server: int) -> dict:
    """PgBouncer in session mode in front of the primary (`rw`) or of the replicas (`ro`, CloudNativePG balancing
    over them); each replica accepts as many connections as the primary."""
    return {
        "cluster": {"name": ctx.cluster},
        "instances": ctx.k8s.pooler.instances,
        "type": kind,
        "pgbouncer": {
            "poolMode": "session",
            "parameters": {
                "max_client_conn": str(ctx.k8s.pooler.max_client_connections),
                "default_pool_size": str(max(1, server // ctx.k8s.pooler.instances)),
            },
        },
        "monitoring": {"enablePodMonitor": False},
    }


def database_nodes(ctx: Context) -> dict:
    """On a provisioned cluster with a database pool, PostgreSQL runs there, and only there (its nodes are tainted)."""
    cluster = ctx.platform.cluster
    if cluster.kind != "openstack" or not cluster.database:
        return {}
    return {
        "nodeSelector": {DATABASE_LABEL: "true"},
        "tolerations": [{"key": DATABASE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
    }


def meta(ctx: Context, name: str) -> dict:
    return {"name": name, "namespace": ctx.namespace, "labels": {"app.kubernetes.io/part-of": "eolake"}}


def cluster_spec(ctx: Context) -> dict:
    pg, db = ctx.k8s.postgres, ctx.platform.database
    spec: dict = {
        "instances": pg.instances,
        "imageName": pg.image.ref,
        "enableSuperuserAccess": True,  # the migration Job creates extensions and pgstac's roles
        # Settings from the instances' resource limits (eolake_spec.tuning) and the spec's own database.settings.
        "postgresql": {"parameters": db.server_settings(pg.machine())},
        "bootstrap": bootstrap(ctx),
        "managed": {
            "roles": [
                {
                    "name": APP_ROLE,
                    "ensure": "present",
                    "login": True,
                    "passwordSecret": {"name": ctx.k8s.secrets.app_database},
                }
            ]
        },
        "storage": {"size": pg.storage_size, **({"storageClass": pg.storage_class} if pg.storage_class else {})},
        "affinity": {"topologyKey": "kubernetes.io/hostname", "enablePodAntiAffinity": True, **database_nodes(ctx)},
        "primaryUpdateStrategy": "unsupervised",
        "monitoring": {"enablePodMonitor": ctx.k8s.releases.kube_prometheus_stack},
        "resources": pods.resources(pg.resources),
    }
    if pg.backup:  # archived under <destination>/<cluster name>/: a recovered cluster never mixes its WAL in
        store = object_store(pg.backup.destination, pg.backup.endpoint, pg.backup.credentials_secret)
        spec["backup"] = {
            "barmanObjectStore": {**store, "wal": {"compression": "gzip"}, "data": {"compression": "gzip"}},
            "retentionPolicy": pg.backup.retention,
        }
    if pg.recovery:
        source = pg.recovery_store()
        spec["externalClusters"] = [
            {
                "name": pg.recovery.source,
                "barmanObjectStore": {
                    **object_store(source["destination"], source["endpoint"], source["credentials_secret"]),
                    "serverName": pg.recovery.source,
                },
            }
        ]
    return spec


def bootstrap(ctx: Context) -> dict:
    """A new database (initdb), or the recovery of another cluster's backups up to the spec's target time."""
    pg, db = ctx.k8s.postgres, ctx.platform.database
    if pg.recovery is None:
        return {
            "initdb": {
                "database": db.name,
                "owner": db.user,
                "postInitApplicationSQL": [
                    "CREATE EXTENSION IF NOT EXISTS postgis",
                    "CREATE EXTENSION IF NOT EXISTS btree_gist",
                ],
            }
        }
    recovery: dict = {"source": pg.recovery.source, "database": db.name, "owner": db.user}
    if pg.recovery.target_time:
        recovery["recoveryTarget"] = {"targetTime": pg.recovery.target_time.isoformat()}
    return {"recovery": recovery}


def object_store(destination: str, endpoint: str | None, credentials_secret: str) -> dict:
    credentials = {"name": credentials_secret}
    store: dict = {
        "destinationPath": destination,
        "s3Credentials": {
            "accessKeyId": {**credentials, "key": "ACCESS_KEY_ID"},
            "secretAccessKey": {**credentials, "key": "ACCESS_SECRET_KEY"},
        },
    }
    if endpoint:
        store["endpointURL"] = endpoint
    return store


def network_policies(ctx: Context) -> dict[str, dict]:
    # Pooler pods carry cnpg.io/cluster too: the database's policy selects its PostgreSQL pods only (instances
    # and the Jobs that create them: initdb, join, full-recovery from the object store).
    database = {"pod_selector": ctx.database_pods}
    poolers = [network.pods({"cnpg.io/poolerName": name}) for name in ctx.poolers]
    api_and_storage = network.outside(443, 6443)  # the Kubernetes API (the instance manager) and S3 backups
    prometheus = network.prometheus(ctx.k8s.monitoring_namespace)
    policies = {
        f"{ctx.cluster}-netpol": {
            "pod_selector": ctx.database_pods,
            "policy_types": ["Ingress", "Egress"],
            "ingress": [
                {"from": [*poolers, database, network.pods(MIGRATE_LABELS)], "ports": network.tcp(5432)},
                {"from": [OPERATOR], "ports": network.tcp(8000, 5432)},
                {"from": [prometheus], "ports": network.tcp(9187)},
            ],
            "egress": [{"to": [database], "ports": network.tcp(5432)}, api_and_storage],  # replication
        }
    }
    for name, kind in ctx.poolers.items():
        policies[f"{name}-netpol"] = {
            "pod_selector": {"match_labels": {"cnpg.io/poolerName": name}},
            "policy_types": ["Ingress", "Egress"],
            "ingress": [
                {"from": [pooler_clients(ctx, kind)], "ports": network.tcp(5432)},
                {"from": [prometheus], "ports": network.tcp(9127)},
            ],
            "egress": [{"to": [database], "ports": network.tcp(5432)}, api_and_storage],
        }
    return policies


def pooler_clients(ctx: Context, kind: str) -> dict:
    """Every database client reaches the primary's pooler; the replicas' pooler, the services reading there."""
    if kind == "rw":
        return network.pods({network.DATABASE_CLIENT: "true"})
    readers = sorted(name for name in ctx.services if ctx.platform.reads_from_replica(name))
    return {
        "pod_selector": {
            "match_labels": {network.DATABASE_CLIENT: "true"},
            "match_expressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": readers}],
        }
    }
