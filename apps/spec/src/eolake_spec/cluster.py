"""The spec's `cluster:` section: where the Kubernetes cluster of the `kubernetes:` target comes from.

`existing` (the default) deploys into a cluster someone else runs, reached with a kubeconfig; `openstack` makes the
Pulumi program provision it first (network, load balancers, Ubuntu 24.04 servers running RKE2, object storage).
"""

from __future__ import annotations

from ipaddress import IPv4Network, ip_network
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, IPvAnyNetwork, model_validator

# RKE2's default pod and service networks: the nodes' subnet must not overlap them.
RKE2_NETWORKS = (ip_network("10.42.0.0/16"), ip_network("10.43.0.0/16"))
Weekday = Literal["su", "mo", "tu", "we", "th", "fr", "sa"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExistingCluster(_Strict):
    """A cluster that already runs: Pulumi's Kubernetes provider reads the kubeconfig (KUBECONFIG or
    ~/.kube/config, or `pulumi config set kubernetes:kubeconfig`), as before the cluster layer existed."""

    kind: Literal["existing"] = "existing"


class NodePool(_Strict):
    count: int = Field(ge=0, le=100, description="servers in the pool")
    flavor: str = Field(min_length=1, description="the Nova flavour (CloudFerro: e.g. eo2a.xlarge)")


class DatabasePool(NodePool):
    """Servers reserved for PostgreSQL (labelled and tainted): one per CloudNativePG instance at least."""

    volume_type: str | None = Field(
        None, description="the Cinder volume type of the database volumes; None: the cloud's default"
    )


class RebootWindow(_Strict):
    """When kured may reboot a node that unattended-upgrades left needing it (one node at a time, drained)."""

    days: list[Weekday] = Field(["mo", "tu", "we", "th", "fr"], min_length=1)
    start: str = Field("03:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="UTC")
    end: str = Field("06:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="UTC")


def _not_everyone(networks: list[IPvAnyNetwork]) -> list[IPvAnyNetwork]:
    open_to_all = [str(n) for n in networks if n.prefixlen == 0]
    if open_to_all:
        raise ValueError(
            f"{', '.join(open_to_all)} opens the API server to the whole Internet: name the administrators' networks"
        )
    return networks


class OpenStackCluster(_Strict):
    """Provision the cluster on OpenStack (CloudFerro and the like) before deploying the platform into it."""

    kind: Literal["openstack"]
    auth_url: AnyHttpUrl = Field(
        description="Keystone v3 (CloudFerro: https://keystone.cloudferro.com:5000/v3); "
        "credentials come from the environment (OS_APPLICATION_CREDENTIAL_*)"
    )
    region: str | None = Field(None, description="None: the provider's (OS_REGION_NAME)")
    external_network: str = Field(
        min_length=1, description="the provider network of the router's gateway and the floating IPs (its name)"
    )
    image: str = Field("Ubuntu 24.04 LTS", description="the Glance image of every node: Ubuntu 24.04, x86-64")
    subnet_cidr: IPv4Network = Field(IPv4Network("10.20.0.0/22"), description="the nodes' private subnet")
    dns_nameservers: list[str] = Field([], description="None: the cloud's DHCP default")
    admin_cidrs: Annotated[list[IPvAnyNetwork], Field(min_length=1)] = Field(
        description="the only networks that reach the Kubernetes API server (6443)"
    )
    control_plane: NodePool = Field(description="RKE2 servers with embedded etcd: an odd count (3 in production)")
    workers: NodePool = Field(description="run the platform's services and the ingress controller")
    database: DatabasePool | None = Field(None, description="PostgreSQL's own nodes; None: on the workers")
    availability_zones: list[str] = Field(
        [], description="spread every pool over these zones (round robin); empty: the cloud's default zone"
    )
    reboot_window: RebootWindow = RebootWindow()
    joined: bool = Field(
        False,
        description="set true once the cluster exists: the first server then joins it "
        "like the others, so that replacing it never starts a new cluster",
    )

    @model_validator(mode="after")
    def sound(self) -> OpenStackCluster:
        _not_everyone(self.admin_cidrs)
        if self.control_plane.count % 2 == 0:
            raise ValueError(
                f"control_plane.count {self.control_plane.count}: etcd needs an odd number of members "
                "(1, 3 or 5) to keep a quorum"
            )
        if self.workers.count < 1:
            raise ValueError("workers.count: at least 1 worker runs the services and the ingress controller")
        clash = [str(n) for n in RKE2_NETWORKS if n.overlaps(self.subnet_cidr)]
        if clash:
            raise ValueError(f"subnet_cidr {self.subnet_cidr} overlaps RKE2's pod/service network {clash[0]}")
        if self.subnet_cidr.num_addresses < 16:
            raise ValueError(f"subnet_cidr {self.subnet_cidr} is too small for the nodes and load balancers")
        return self

    @property
    def database_nodes(self) -> int:
        return self.database.count if self.database else 0


Cluster = Annotated[ExistingCluster | OpenStackCluster, Field(discriminator="kind")]
