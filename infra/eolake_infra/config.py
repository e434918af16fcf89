"""Everything the components read, derived once from the platform spec, with the checks that need the whole spec."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from eolake.spec import DATABASE_SERVICES, Kubernetes, Platform, Service

APP_ROLE = "eolake_app"  # what services connect as (pgstac_ingest), as in the embedded runner
CLUSTER = "eolake-db"  # the CloudNativePG Cluster; its Services are eolake-db-rw/-ro/-r
RUN_AS = 10001  # the uid/gid the images create (apps/*/Dockerfile)
SURGE = 1  # extra pod per Deployment during a rolling update


class InfraError(ValueError):
    """A spec the Kubernetes target cannot deploy; raised before any resource is created."""


@dataclass(frozen=True)
class Kind:
    """What the platform knows about a service image: adding a service to Kubernetes is one line in SERVICES."""

    component: str  # the type token suffix, eolake:service:<component>
    port: int
    database: bool
    worker: str | None = None  # module of the service's job workers: a second Deployment, scaled on queue depth
    schema: str | None = None  # module whose migrate() creates the service's own schema (a Job, after pgstac's)


SERVICES: dict[str, Kind] = {
    "catalog": Kind("Catalog", 8081, database=True),
    "tiles": Kind("Tiles", 8082, database=True),
    "timeseries": Kind("Timeseries", 8083, database=False),
    "downloads": Kind("Downloads", 8087, database=True, worker="eolake_downloads.worker",
                      schema="eolake_downloads.schema"),
    "web": Kind("Web", 8084, database=False),
    "search": Kind("Search", 8086, database=False),
}


@dataclass(frozen=True)
class Context:
    platform: Platform
    k8s: Kubernetes
    source: str  # the stack file, for messages

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
    def services(self) -> dict[str, Service]:
        return self.platform.enabled_services

    def image(self, name: str) -> str:
        return self.k8s.images[name].ref

    def labels(self, name: str) -> dict[str, str]:
        return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "eolake"}

    def max_replicas(self, name: str) -> int:
        scaling = self.k8s.autoscaling.get(name)
        return scaling.max_replicas if scaling else self.services[name].replicas


def resolve(platform: Platform, source: str) -> Context:
    """Check what only the Kubernetes target needs; every problem names the stack file and the field."""
    k8s = platform.kubernetes
    if k8s is None:
        raise InfraError(f"{source}: kubernetes: missing: the Kubernetes target needs a `kubernetes:` section")
    if platform.database.embedded:
        raise InfraError(f"{source}: database.embedded: must be false on Kubernetes (CloudNativePG runs it)")
    ctx = Context(platform, k8s, source)
    problems = []
    for name, service in ctx.services.items():
        if name not in SERVICES:
            problems.append(f"services.{name}: enabled, but eolake has no Kubernetes component for it yet "
                            f"(known: {', '.join(sorted(SERVICES))}); set services.{name}.enabled: false")
        elif name not in k8s.images:
            problems.append(f"kubernetes.images.{name}: missing: service {name} is enabled and needs an image")
        scaling = k8s.autoscaling.get(name)
        if scaling and scaling.max_replicas < service.replicas:
            problems.append(f"kubernetes.autoscaling.{name}.max_replicas: {scaling.max_replicas} is below "
                            f"services.{name}.replicas ({service.replicas})")
    if any(SERVICES[n].database for n in ctx.services if n in SERVICES) and "migrate" not in k8s.images:
        problems.append("kubernetes.images.migrate: missing: the pgstac migration Job needs the image built from "
                        "infra/images/migrate")
    unknown = sorted(set(k8s.images) - set(SERVICES) - {"migrate"})
    if unknown:
        problems.append(f"kubernetes.images: unknown {', '.join(unknown)} (known: "
                        f"{', '.join(sorted([*SERVICES, 'migrate']))})")
    problems += connection_budget(ctx)
    if problems:
        raise InfraError(f"{source}: cannot deploy to Kubernetes:\n  " + "\n  ".join(problems))
    return ctx


def peak_connections(ctx: Context) -> int:
    """Client connections at the worst moment: every service at its HPA maximum, mid rolling update."""
    return sum((ctx.max_replicas(name) + SURGE) * s.workers * s.pool_size
               for name, s in ctx.services.items() if name in DATABASE_SERVICES)


def connection_budget(ctx: Context) -> list[str]:
    """The pooler runs in session mode (asyncpg keeps prepared statements per connection): each client holds a
    server connection, so the peak must fit Postgres; and when one pooler pod is down the others take its clients."""
    peak, db = peak_connections(ctx), ctx.platform.database
    server = db.max_connections - db.reserved_connections
    pooler = ctx.k8s.pooler
    clients = pooler.max_client_connections * max(1, pooler.instances - 1)
    formula = "(autoscaling.max_replicas + 1 surge) × workers × pool_size"
    problems = []
    if peak > server:
        problems.append(f"connection budget: services may open {peak} connections ({formula}) but "
                        f"database.max_connections − reserved_connections is {server}")
    if peak > clients:
        problems.append(f"connection budget: services may open {peak} connections ({formula}) but the pooler "
                        f"accepts {clients} with one of its {pooler.instances} instance(s) down "
                        "(kubernetes.pooler.max_client_connections)")
    return problems
