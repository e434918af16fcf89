"""The cluster layer on OpenStack: a private network behind a router, two Octavia load balancers with floating IPs
(the API server, open only to the administrators' networks; the ingress, 80/443 for everyone), Ubuntu 24.04
servers in anti-affinity groups running RKE2, the object storage buckets and the credentials the platform reads.

Nodes have no public address and no SSH: only the load balancers are reachable from outside. Security groups admit,
between nodes, only what RKE2 with Canal uses; from the load balancers (the subnet), only their backends' ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import pulumi
import pulumi_openstack as openstack
import pulumi_random as random

from eolake_infra.cluster import cloudinit, kubeconfig
from eolake_infra.cluster.cloudinit import API_PORT, SUPERVISOR_PORT, Node
from eolake_infra.config import DATABASE_LABEL, Context
from eolake_spec import OpenStackCluster

# Between nodes: (protocol, first port, last port, the group listening, the group allowed to call).
NODE_PORTS = [
    ("tcp", API_PORT, API_PORT, "servers", "nodes"),  # kubelets and pods to the API server
    ("tcp", SUPERVISOR_PORT, SUPERVISOR_PORT, "servers", "nodes"),  # RKE2's supervisor: joining, certificates
    ("tcp", 2379, 2380, "servers", "servers"),  # etcd clients and peers: the control plane alone
    ("tcp", 10250, 10250, "nodes", "nodes"),  # kubelet (logs, exec, metrics)
    ("udp", 8472, 8472, "nodes", "nodes"),  # Canal's VXLAN: all pod-to-pod traffic
    ("tcp", 9099, 9099, "nodes", "nodes"),  # Canal's health checks
    ("tcp", 9100, 9100, "nodes", "nodes"),  # node-exporter, scraped by Prometheus
]
INGRESS_PORTS = (80, 443)
EVERYONE = "0.0.0.0/0"


@dataclass
class Server:
    name: str  # control-plane-0, worker-1…
    instance: openstack.compute.Instance
    port: openstack.networking.Port


@dataclass
class Provisioned:
    kubeconfig: pulumi.Output[str]  # secret
    api_address: pulumi.Output[str]
    ingress_address: pulumi.Output[str]
    storage_keys: dict[str, pulumi.Output[str]]  # access, secret (secret)
    cloud_conf: pulumi.Output[str]  # the Cinder CSI's cloud.conf (secret)
    ready: list[pulumi.Resource]


class OpenStackLayer(pulumi.ComponentResource):
    def __init__(self, ctx: Context, spec: OpenStackCluster):
        super().__init__("eolake:cluster:OpenStack", "cluster", None, None)
        self.ctx, self.spec = ctx, spec
        self.provider = openstack.Provider(
            "openstack", auth_url=str(spec.auth_url), region=spec.region, opts=pulumi.ResourceOptions(parent=self)
        )
        self.child = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self.network, self.subnet, router_link = self._network()
        self.groups = self._security_groups()
        self.api_lb, self.api_vip = self._load_balancer("api")
        self.ingress_lb, self.ingress_vip = self._load_balancer("ingress")
        self.token = random.RandomPassword(
            "rke2-token", length=48, special=False, opts=pulumi.ResourceOptions(parent=self)
        )
        self.certificates = kubeconfig.Certificates(self)
        servers = self._pool("control-plane", spec.control_plane.count, spec.control_plane.flavor, router_link)
        workers = self._pool("worker", spec.workers.count, spec.workers.flavor, router_link)
        database = (
            self._pool("database", spec.database.count, spec.database.flavor, router_link) if spec.database else []
        )
        self._api_backends(servers)
        self._ingress_backends(workers)
        for name in buckets(ctx):
            self._bucket(name)
        self.result = self._hand_over([s.instance for s in (*servers, *workers, *database)])
        self.register_outputs({"api_address": self.result.api_address, "ingress_address": self.result.ingress_address})

    def _hand_over(self, nodes: list[openstack.compute.Instance]) -> Provisioned:
        """What the platform layer gets: the kubeconfig, the S3 keys of the buckets, the CSI's credentials."""
        keys = openstack.identity.Ec2CredentialV3("storage-credentials", opts=self.child)
        csi = openstack.identity.ApplicationCredential(
            "cinder-csi-credentials",
            name=f"eolake-{self.ctx.platform.name}-cinder-csi",
            description="Cinder CSI of the eolake cluster: attaches and detaches its volumes",
            opts=self.child,
        )
        api = self.api_vip.address.apply(lambda address: f"https://{address}:{API_PORT}")
        return Provisioned(
            kubeconfig=pulumi.Output.secret(kubeconfig.render(api, self.certificates)),
            api_address=self.api_vip.address,
            ingress_address=self.ingress_vip.address,
            storage_keys={"access": keys.access, "secret": pulumi.Output.secret(keys.secret)},
            cloud_conf=pulumi.Output.secret(
                pulumi.Output.all(csi.id, csi.secret).apply(lambda v: cloud_conf(self.spec, v[0], v[1]))
            ),
            ready=nodes,
        )

    def _network(self):
        name = f"eolake-{self.ctx.platform.name}"
        network = openstack.networking.Network("network", name=name, admin_state_up=True, opts=self.child)
        subnet = openstack.networking.Subnet(
            "subnet",
            name=name,
            network_id=network.id,
            cidr=str(self.spec.subnet_cidr),
            ip_version=4,
            dns_nameservers=self.spec.dns_nameservers or None,
            opts=self.child,
        )
        external = openstack.networking.get_network_output(
            name=self.spec.external_network,
            external=True,
            opts=pulumi.InvokeOutputOptions(parent=self, provider=self.provider),
        )
        router = openstack.networking.Router(
            "router", name=name, admin_state_up=True, external_network_id=external.id, opts=self.child
        )
        link = openstack.networking.RouterInterface(
            "router-interface", router_id=router.id, subnet_id=subnet.id, opts=self.child
        )
        return network, subnet, link

    def _security_groups(self) -> dict[str, openstack.networking.SecGroup]:
        """`nodes` on every node, `servers` on the control plane, `workers` behind the ingress load balancer.
        Egress stays open (packages, images, RKE2)."""
        groups = {
            role: openstack.networking.SecGroup(
                f"secgroup-{role}",
                name=f"eolake-{self.ctx.platform.name}-{role}",
                description=f"eolake {role}: only the ports the cluster uses",
                opts=self.child,
            )
            for role in ("nodes", "servers", "workers")
        }
        for protocol, low, high, listener, caller in NODE_PORTS:
            self._rule(
                groups[listener],
                f"{listener}-{protocol}-{low}-from-{caller}",
                protocol,
                low,
                high,
                remote_group_id=groups[caller].id,
            )
        subnet = str(self.spec.subnet_cidr)  # the load balancers' members see the amphorae's subnet addresses
        for port in (API_PORT, SUPERVISOR_PORT):
            self._rule(
                groups["servers"], f"servers-tcp-{port}-from-load-balancer", "tcp", port, port, remote_ip_prefix=subnet
            )
        for port in INGRESS_PORTS:
            self._rule(
                groups["workers"], f"workers-tcp-{port}-from-load-balancer", "tcp", port, port, remote_ip_prefix=subnet
            )
        return groups

    def _rule(self, group, name: str, protocol: str, low: int, high: int, **remote) -> None:
        openstack.networking.SecGroupRule(
            f"rule-{name}",
            security_group_id=group.id,
            direction="ingress",
            ethertype="IPv4",
            protocol=protocol,
            port_range_min=low,
            port_range_max=high,
            **remote,
            opts=self.child,
        )

    def _load_balancer(self, role: str):
        lb = openstack.loadbalancer.LoadBalancer(
            f"lb-{role}", name=f"eolake-{self.ctx.platform.name}-{role}", vip_subnet_id=self.subnet.id, opts=self.child
        )
        vip = openstack.networking.FloatingIp(
            f"floating-ip-{role}",
            pool=self.spec.external_network,
            port_id=lb.vip_port_id,
            description=f"eolake {role}",
            opts=self.child,
        )
        return lb, vip

    def _pool(self, pool: str, count: int, flavor: str, network_ready: pulumi.Resource) -> list[Server]:
        group = openstack.compute.ServerGroup(
            f"servergroup-{pool}",
            name=f"eolake-{self.ctx.platform.name}-{pool}",
            policies="anti-affinity",
            opts=self.child,
        )
        roles = {"control-plane": ["nodes", "servers"], "worker": ["nodes", "workers"], "database": ["nodes"]}
        security = [self.groups[role].id for role in roles[pool]]
        zones = self.spec.availability_zones
        created = []
        for index in range(count):
            name = f"{pool}-{index}"
            port = openstack.networking.Port(
                f"port-{name}",
                network_id=self.network.id,
                fixed_ips=[{"subnet_id": self.subnet.id}],
                security_group_ids=security,
                opts=self.child,
            )
            node = node_of(pool, index)
            user_data = pulumi.Output.secret(self._settings(node).apply(lambda s, n=node: cloudinit.user_data(n, s)))
            created.append(
                Server(
                    name,
                    openstack.compute.Instance(
                        f"node-{name}",
                        name=f"eolake-{self.ctx.platform.name}-{name}",
                        image_name=self.spec.image,
                        flavor_name=flavor,
                        networks=[{"port": port.id}],
                        scheduler_hints=[{"group": group.id}],
                        availability_zone=zones[index % len(zones)] if zones else None,
                        user_data=user_data,
                        metadata={"eolake-pool": pool},
                        # cloud-init runs once: a changed template or image must not replace every node at once
                        # (day 2 in infra/README.md: nodes are replaced one at a time, drained first)
                        opts=pulumi.ResourceOptions.merge(
                            self.child,
                            pulumi.ResourceOptions(
                                depends_on=[network_ready], ignore_changes=["userData", "imageName"]
                            ),
                        ),
                    ),
                    port,
                )
            )
        return created

    def _settings(self, node: Node) -> pulumi.Output[cloudinit.Settings]:
        ca = self.certificates.ca_files() if node.first else pulumi.Output.from_input({})
        return pulumi.Output.all(self.token.result, self.api_lb.vip_address, self.api_vip.address, ca).apply(
            lambda v: settings(self.spec, token=v[0], supervisor=v[1], public=v[2], ca=v[3])
        )

    def _api_backends(self, servers: list) -> None:
        """6443 for the administrators (the listener's allowed CIDRs) and the nodes; 9345 for the nodes only."""
        nodes = [str(self.spec.subnet_cidr)]
        self._listener("api", self.api_lb, API_PORT, "TCP", [*map(str, self.spec.admin_cidrs), *nodes], servers)
        self._listener("supervisor", self.api_lb, SUPERVISOR_PORT, "TCP", nodes, servers)

    def _ingress_backends(self, workers: list) -> None:
        """The one place open to everyone: HTTP and HTTPS, passed on with the client's address (PROXY protocol)."""
        for port in INGRESS_PORTS:
            self._listener(f"ingress-{port}", self.ingress_lb, port, "PROXY", [EVERYONE], workers)

    def _listener(self, name: str, lb, port: int, backend: str, allowed: list[str], members: list) -> None:
        listener = openstack.loadbalancer.Listener(
            f"listener-{name}",
            loadbalancer_id=lb.id,
            protocol="TCP",
            protocol_port=port,
            allowed_cidrs=allowed,
            opts=self.child,
        )
        pool = openstack.loadbalancer.Pool(
            f"pool-{name}", listener_id=listener.id, protocol=backend, lb_method="LEAST_CONNECTIONS", opts=self.child
        )
        openstack.loadbalancer.Monitor(
            f"monitor-{name}", pool_id=pool.id, type="TCP", delay=10, timeout=5, max_retries=3, opts=self.child
        )
        for member in members:
            openstack.loadbalancer.Member(
                f"member-{name}-{member.name}",
                pool_id=pool.id,
                protocol_port=port,
                address=member.port.all_fixed_ips[0],
                subnet_id=self.subnet.id,
                opts=self.child,
            )

    def _bucket(self, name: str) -> openstack.objectstorage.Container:
        """Data and backups outlive the stack: Pulumi never deletes a bucket (`retain_on_delete`)."""
        return openstack.objectstorage.Container(
            f"bucket-{name}",
            name=name,
            region=self.spec.region,
            opts=pulumi.ResourceOptions.merge(self.child, pulumi.ResourceOptions(retain_on_delete=True)),
        )


def node_of(pool: str, index: int) -> Node:
    server = pool == "control-plane"
    return Node(pool=pool, server=server, first=server and index == 0, **node_role(pool))


def settings(
    spec: OpenStackCluster, token: str, supervisor: str, public: str, ca: dict[str, str]
) -> cloudinit.Settings:
    """`supervisor`: the API load balancer's private address; `public`: its floating IP."""
    window = spec.reboot_window
    return cloudinit.Settings(
        token=token,
        supervisor=supervisor,
        api_addresses=[public, supervisor],
        ca=ca,
        joined=spec.joined,
        reboot_days=list(window.days),
        reboot_start=window.start,
        reboot_end=window.end,
    )


def node_role(pool: str) -> dict:
    """Servers take only RKE2's own add-ons; database nodes only PostgreSQL (CloudNativePG tolerates the taint)."""
    if pool == "control-plane":
        return {"taints": ["CriticalAddonsOnly=true:NoExecute"]}
    if pool == "database":
        return {"labels": {DATABASE_LABEL: "true"}, "taints": [f"{DATABASE_LABEL}=true:NoSchedule"]}
    return {}


def buckets(ctx: Context) -> list[str]:
    """The buckets the spec names: the data (storage.bucket) and the database backups (backup.destination)."""
    names = []
    if ctx.platform.storage.kind == "s3":
        names.append(ctx.platform.storage.bucket)
    if ctx.k8s.postgres.backup:
        names.append(urlsplit(ctx.k8s.postgres.backup.destination).netloc)
    return sorted(set(names))


def cloud_conf(spec: OpenStackCluster, credential_id: str, credential_secret: str) -> str:
    lines = [
        "[Global]",
        f"auth-url={str(spec.auth_url).rstrip('/')}",
        f"application-credential-id={credential_id}",
        f"application-credential-secret={credential_secret}",
    ]
    if spec.region:
        lines.append(f"region={spec.region}")
    return "\n".join([*lines, "", "[BlockStorage]", "ignore-volume-az=true", ""])
