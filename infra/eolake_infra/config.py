"""Everything the components read, derived once from the platform spec, with the checks that need the whole spec."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import pulumi

from eolake_spec import Kubernetes, Platform, Service, ServiceManifest

APP_ROLE = "eolake_app"  # what services connect as (pgstac_ingest), as in the embedded runner
RUN_AS = 10001  # the uid/gid the images create (apps/*/Dockerfile)
SURGE = 1  # extra pod per Deployment during a rolling update
KUBE_PROMETHEUS_STACK = "kube-prometheus-stack"  # the release's name, which its Services carry
PROMETHEUS_PORT, ALERTMANAGER_PORT = 9090, 9093
DATABASE_LABEL = "eolake.io/database"  # label and taint of a provisioned cluster's PostgreSQL nodes
DATABASE_STORAGE_CLASS = "eolake-db"  # Cinder volumes, retained: what a provisioned cluster gives PostgreSQL
RKE2_INGRESS = ("kube-system", {"app.kubernetes.io/name": "rke2-ingress-nginx"})  # RKE2's bundled ingress-nginx


class InfraError(ValueError):
    """A spec the Kubernetes target cannot deploy; raised before any resource is created."""


@dataclass(frozen=True)
class Context:
    platform: Platform
    k8s: Kubernetes
    source: str  # the stack file, for messages
    provider: pulumi.ProviderResource | None = None  # the cluster layer's; None: the ambient kubeconfig

    def options(self, **more) -> pulumi.ResourceOptions:
        """Options of a Kubernetes resource of the platform layer (not a component's child, which inherits)."""
        return pulumi.ResourceOptions(provider=self.provider, **more)

    def component_options(self) -> pulumi.ResourceOptions | None:
        return pulumi.ResourceOptions(providers=[self.provider]) if self.provider else None

    @property
    def namespace(self) -> str:
        return self.k8s.namespace

    @property
    def host(self) -> str:
        return urlsplit(str(self.platform.base_url)).hostname or ""

    @property
    def pooler(self) -> str:
        return self.platform.database.host

    @property
    def read_pooler(self) -> str | None:
        """The PgBouncer in front of the cluster's replicas (CloudNativePG's `-ro` Service), when it has some."""
        return f"{self.pooler}-ro" if self.k8s.postgres.instances > 1 else None

    @property
    def poolers(self) -> dict[str, str]:
        """Each Pooler by name, with its type: `rw` (the primary), `ro` (the replicas)."""
        return {self.pooler: "rw", **({self.read_pooler: "ro"} if self.read_pooler else {})}

    @property
    def cluster(self) -> str:
        """The CloudNativePG Cluster (kubernetes.postgres.cluster_name); its Services are <name>-rw/-ro/-r."""
        return self.k8s.postgres.cluster_name

    @property
    def database_pods(self) -> dict:
        """A selector for the cluster's PostgreSQL pods: its instances and the Jobs that create them (initdb, join,
        full-recovery; they carry the cluster label too), never its pooler's pods (which carry it as well)."""
        return {
            "match_labels": {"cnpg.io/cluster": self.cluster},
            "match_expressions": [{"key": "cnpg.io/poolerName", "operator": "DoesNotExist"}],
        }

    @property
    def services(self) -> dict[str, Service]:
        return self.platform.enabled_services

    def manifest(self, name: str) -> ServiceManifest:
        return self.platform.manifest(name)

    def image(self, name: str) -> str:
        return self.k8s.images[name].ref

    def cluster_address(self, name: str) -> str:
        """A service's in-cluster origin: its Service's DNS name and port."""
        return f"http://{name}.{self.namespace}.svc.cluster.local:{self.manifest(name).port}"

    @property
    def origins(self) -> dict[str, str]:
        return {name: self.cluster_address(name) for name in self.services}

    @property
    def observers(self) -> dict[str, str]:
        """kube-prometheus-stack's Prometheus and Alertmanager (their Services are named after the release), which
        the web view's operations console reads; none when the stack does not deploy it."""
        if not self.k8s.releases.kube_prometheus_stack:
            return {}
        ns = self.k8s.monitoring_namespace
        return {
            "prometheus": f"http://{KUBE_PROMETHEUS_STACK}-prometheus.{ns}.svc:{PROMETHEUS_PORT}",
            "alertmanager": f"http://{KUBE_PROMETHEUS_STACK}-alertmanager.{ns}.svc:{ALERTMANAGER_PORT}",
        }

    def labels(self, name: str) -> dict[str, str]:
        return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "eolake"}

    def max_replicas(self, name: str) -> int:
        """`name` is a service, or `<service>-worker` for its job workers."""
        scaling = self.k8s.autoscaling.get(name)
        if scaling:
            return scaling.max_replicas
        service = self.services[name.removesuffix("-worker")]
        return service.worker_replicas if name.endswith("-worker") else service.replicas


def resolve(platform: Platform, source: str) -> Context:
    """Check what only the Kubernetes target needs; every problem names the stack file and the field."""
    k8s = platform.kubernetes
    if k8s is None:
        raise InfraError(f"{source}: kubernetes: missing: the Kubernetes target needs a `kubernetes:` section")
    if platform.database.embedded:
        raise InfraError(f"{source}: database.embedded: must be false on Kubernetes (CloudNativePG runs it)")
    ctx = Context(platform, k8s, source)
    problems = []
    known = platform.services
    for name in ctx.services:
        if name not in k8s.images:
            problems.append(f"kubernetes.images.{name}: missing: service {name} is enabled and needs an image")
    for name, scaling in k8s.autoscaling.items():
        service = known.get(name.removesuffix("-worker"))
        if service is None or (name.endswith("-worker") and not ctx.manifest(name.removesuffix("-worker")).worker):
            problems.append(f"kubernetes.autoscaling.{name}: no such service or worker")
            continue
        floor = service.worker_replicas if name.endswith("-worker") else service.replicas
        if scaling.max_replicas < floor:
            problems.append(
                f"kubernetes.autoscaling.{name}.max_replicas: {scaling.max_replicas} is below the "
                f"replicas of services.{name.removesuffix('-worker')} ({floor})"
            )
    if any(ctx.manifest(n).database for n in ctx.services) and "migrate" not in k8s.images:
        problems.append(
            "kubernetes.images.migrate: missing: the pgstac migration Job needs the image built from "
            "infra/images/migrate"
        )
    unknown = sorted(set(k8s.images) - set(known) - {"migrate"})
    if unknown:
        problems.append(
            f"kubernetes.images: unknown {', '.join(unknown)} (known: {', '.join(sorted([*known, 'migrate']))})"
        )
    if (
        platform.storage.kind == "s3"
        and not k8s.secrets.storage
        and any("storage" in ctx.manifest(n).secrets for n in ctx.services)
    ):
        problems.append(
            "kubernetes.secrets.storage: missing: storage is s3 and services read it; name the Secret "
            "holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if ctx.cluster == ctx.pooler:
        problems.append(
            f"kubernetes.postgres.cluster_name: {ctx.cluster!r} is also database.host, the pooler's "
            "name; CloudNativePG needs them different"
        )
    problems += connection_budget(ctx) + provisioned_cluster(ctx)
    if problems:
        raise InfraError(f"{source}: cannot deploy to Kubernetes:\n  " + "\n  ".join(problems))
    return ctx


def peak_connections(ctx: Context) -> int:
    """Client connections at the worst moment: every service at its HPA maximum, mid rolling update."""
    return sum(
        ctx.platform.connections(
            name,
            ctx.max_replicas(name) + SURGE,
            ctx.max_replicas(f"{name}-worker") + SURGE if ctx.manifest(name).worker else 0,
        )
        for name in ctx.services
    )


def connection_budget(ctx: Context) -> list[str]:
    """The pooler runs in session mode (asyncpg keeps prepared statements per connection): each client holds a
    server connection, so the peak must fit Postgres; and when one pooler pod is down the others take its clients."""
    peak, db = peak_connections(ctx), ctx.platform.database
    server = db.max_connections - db.reserved_connections
    pooler = ctx.k8s.pooler
    clients = pooler.max_client_connections * max(1, pooler.instances - 1)
    formula = "(autoscaling.max_replicas + 1 surge) × workers × pool_size, plus job workers"
    problems = []
    if peak > server:
        problems.append(
            f"connection budget: services may open {peak} connections ({formula}) but "
            f"database.max_connections − reserved_connections is {server}"
        )
    if peak > clients:
        problems.append(
            f"connection budget: services may open {peak} connections ({formula}) but the pooler "
            f"accepts {clients} with one of its {pooler.instances} instance(s) down "
            "(kubernetes.pooler.max_client_connections)"
        )
    return problems


def provisioned_cluster(ctx: Context) -> list[str]:
    """What a cluster the stack provisions (cluster: openstack) fixes for the platform layer."""
    cluster, k8s = ctx.platform.cluster, ctx.k8s
    if cluster.kind != "openstack":
        return []
    problems = []
    if k8s.postgres.storage_class != DATABASE_STORAGE_CLASS:
        problems.append(
            f"kubernetes.postgres.storage_class: must be {DATABASE_STORAGE_CLASS} on an openstack "
            f"cluster (the retained Cinder StorageClass it creates), not {k8s.postgres.storage_class}"
        )
    if cluster.database and cluster.database.count < k8s.postgres.instances:
        problems.append(
            f"cluster.database.count: {cluster.database.count} node(s) for "
            f"{k8s.postgres.instances} PostgreSQL instances (kubernetes.postgres.instances): each "
            "instance needs a node of its own"
        )
    namespace, labels = RKE2_INGRESS
    ingress = k8s.ingress
    if ingress.kind == "nginx" and (ingress.proxy_namespace, ingress.proxy_labels) != RKE2_INGRESS:
        problems.append(
            f"kubernetes.ingress: an openstack cluster runs RKE2's ingress-nginx: set "
            f"controller_namespace: {namespace} and controller_labels: {labels}"
        )
    return problems
