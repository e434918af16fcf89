"""The cluster layer, under the platform layer: `cluster: existing` hands the platform the ambient kubeconfig (no
resource at all, as before); `cluster: openstack` provisions the cluster and hands over its kubeconfig, the object
storage credentials and the Cinder CSI's cloud configuration, all as Pulumi secrets."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from eolake_infra.cluster import cloudinit
from eolake_infra.cluster.cloudinit import CINDER_CSI_SECRET
from eolake_infra.cluster.kubeconfig import CA_FILES
from eolake_infra.cluster.openstack import OpenStackLayer, Provisioned, node_of, settings
from eolake_infra.cluster.ready import ApiReady
from eolake_infra.config import DATABASE_STORAGE_CLASS, Context

CINDER_CSI = "cinder.csi.openstack.org"


@dataclass
class ClusterLayer:
    provider: k8s.Provider | None = None  # None: Pulumi's default provider (the ambient kubeconfig)
    provisioned: Provisioned | None = None


def provision(ctx: Context) -> ClusterLayer:
    spec = ctx.platform.cluster
    if spec.kind == "existing":
        return ClusterLayer()
    layer = OpenStackLayer(ctx, spec)
    result = layer.result
    up = ApiReady(
        "cluster-ready", result.kubeconfig, opts=pulumi.ResourceOptions(parent=layer, depends_on=result.ready)
    )
    provider = k8s.Provider("cluster", kubeconfig=result.kubeconfig, opts=pulumi.ResourceOptions(depends_on=[up]))
    pulumi.export("kubeconfig", result.kubeconfig)
    pulumi.export("api_address", result.api_address)
    pulumi.export("ingress_address", result.ingress_address)  # point the base URL's DNS name here
    return ClusterLayer(provider, result)


def hand_over(ctx: Context, provisioned: Provisioned, opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
    """What the platform layer receives from a provisioned cluster, written as Kubernetes objects: the storage and
    backup credentials under the Secret names the spec gives, the CSI's cloud.conf, the database's StorageClass."""
    labels = {"app.kubernetes.io/part-of": "eolake"}
    created: list[pulumi.Resource] = []
    access, secret = provisioned.storage_keys["access"], provisioned.storage_keys["secret"]
    if ctx.k8s.secrets.storage:
        created.append(
            k8s.core.v1.Secret(
                "storage-credentials",
                metadata={"name": ctx.k8s.secrets.storage, "namespace": ctx.namespace, "labels": labels},
                string_data={"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret},
                opts=opts,
            )
        )
    if ctx.k8s.postgres.backup:
        created.append(
            k8s.core.v1.Secret(
                "backup-credentials",
                metadata={
                    "name": ctx.k8s.postgres.backup.credentials_secret,
                    "namespace": ctx.namespace,
                    "labels": labels,
                },
                string_data={"ACCESS_KEY_ID": access, "ACCESS_SECRET_KEY": secret},
                opts=opts,
            )
        )
    created.append(
        k8s.core.v1.Secret(
            "cinder-csi-cloud-config",
            metadata={"name": CINDER_CSI_SECRET, "namespace": "kube-system", "labels": labels},
            string_data={"cloud.conf": provisioned.cloud_conf},
            opts=opts,
        )
    )
    volume_type = ctx.platform.cluster.database.volume_type if ctx.platform.cluster.database else None
    created.append(
        k8s.storage.v1.StorageClass(
            "database-storage-class",
            metadata={"name": DATABASE_STORAGE_CLASS, "labels": labels},
            provisioner=CINDER_CSI,
            reclaim_policy="Retain",
            allow_volume_expansion=True,
            volume_binding_mode="WaitForFirstConsumer",
            parameters={"type": volume_type} if volume_type else None,
            opts=opts,
        )
    )
    return created


def user_data_for_review(ctx: Context, secret: str) -> dict[str, str]:
    """The user-data of each kind of node, as `eolake render` shows it: the same function the servers' comes from,
    with `secret` for the token and the CA files, and names for the addresses only the cloud knows."""
    spec = ctx.platform.cluster
    if spec.kind != "openstack":
        return {}
    values = settings(
        spec,
        token=secret,
        supervisor="API-LOAD-BALANCER-PRIVATE-ADDRESS",
        public="API-FLOATING-IP",
        ca=dict.fromkeys(CA_FILES, secret),
    )
    counts = {"control-plane": spec.control_plane.count, "worker": spec.workers.count, "database": spec.database_nodes}
    kinds = [
        ("control-plane-first", "control-plane", 0),
        ("control-plane", "control-plane", 1),
        ("worker", "worker", 0),
        ("database", "database", 0),
    ]
    return {
        name: cloudinit.user_data(node_of(pool, index), values) for name, pool, index in kinds if index < counts[pool]
    }
