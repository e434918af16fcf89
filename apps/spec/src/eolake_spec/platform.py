"""The platform spec: one typed model of a deployment, loaded from Pulumi stack files in stacks/.

A stack file is `stacks/Pulumi.<stack>.yaml` holding the platform object under the `eolake:platform` key.
The embedded runner, the Pulumi program and the Ansible variables all translate this one model; what each service
is (default path, port, database use, calls…) comes from its manifest (eolake_spec.manifest).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from ipaddress import ip_network
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    Field,
    IPvAnyNetwork,
    ValidationError,
    field_validator,
    model_validator,
)

from eolake_spec.base import Strict
from eolake_spec.cluster import Cluster, ExistingCluster
from eolake_spec.events import Events, check_broker_target
from eolake_spec.manifest import ServiceManifest, manifest, manifests
from eolake_spec.priorities import Provider, check_priorities
from eolake_spec.storage import Storage
from eolake_spec.tuning import Disk, Machine, postgres_settings

QUANTITY = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti)?$")
MIN_MEMORY_LIMIT = 64 * 2**20
QUANTITY_FACTORS = {"m": 0.001, "": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
DNS_LABEL = r"^[a-z]([a-z0-9-]{0,48}[a-z0-9])?$"


def _installed(name: str) -> str:
    known = manifests()
    if name not in known:
        raise ValueError(f"no service {name!r} is installed (known: {', '.join(known)})")
    return name


ServiceName = Annotated[str, AfterValidator(_installed)]


class Resources(Strict):
    cpu_request: str = "100m"
    cpu_limit: str = "1"
    memory_request: str = "256Mi"
    memory_limit: str = Field(
        "1Gi",
        description="the bound of one replica (with its worker processes) in every "
        "target: container limit, systemd MemoryMax, embedded cgroup",
    )

    @field_validator("*")
    @classmethod
    def kubernetes_quantity(cls, value: str) -> str:
        if not QUANTITY.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes quantity such as 500m, 1, 256Mi or 2Gi")
        return value

    @model_validator(mode="after")
    def memory_limit_runs_a_service(self) -> Resources:
        if self.memory_limit_bytes < MIN_MEMORY_LIMIT:
            raise ValueError(f"memory_limit {self.memory_limit!r} is below 64Mi: no service starts in that")
        return self

    @property
    def memory_limit_bytes(self) -> int:
        return int(_quantity(self.memory_limit))

    @property
    def cpu_limit_cores(self) -> float:
        return _quantity(self.cpu_limit)


def _quantity(value: str) -> float:
    matched = re.fullmatch(r"([\d.]+)(\D*)", value)
    assert matched is not None  # the fields' pattern admits nothing else
    number, unit = matched.groups()
    return float(number) * QUANTITY_FACTORS[unit]


class RateLimit(Strict):
    """Requests one user (or, anonymous, one client address) may send to a service's expensive routes (its
    manifest's rate_limited): a token bucket per service process, refilled at requests_per_second up to burst."""

    requests_per_second: float = Field(gt=0, le=100_000)
    burst: int = Field(ge=1, le=1_000_000, description="requests at once after a quiet while")


class Limits(Strict):
    """Bounds on every request a service accepts and on its database statements (eolake_kit.bounds enforces them).

    `limits` of the platform are every service's defaults; `services.<name>.limits` overrides single fields."""

    body_bytes: int = Field(1024 * 1024, ge=1024, description="largest request body, chunked bodies included")
    path_bytes: int = Field(2048, ge=256, description="longest URL path (raw, percent-escapes included)")
    query_bytes: int = Field(8192, ge=256, description="longest query string")
    header_count: int = Field(64, ge=8, description="most request header fields")
    header_bytes: int = Field(16384, ge=1024, description="largest sum of request header names and values")
    request_seconds: float = Field(30, gt=0, le=600, description="time budget until the response starts")
    header_seconds: float = Field(10, gt=0, le=300, description="longest a client may take to send its headers")
    body_idle_seconds: float = Field(10, gt=0, le=300, description="longest wait for the next piece of a body")
    body_min_rate: int = Field(
        1024,
        ge=1,
        description="slowest average body rate (bytes/s) accepted once "
        "body_idle_seconds have passed (a byte a second is not)",
    )
    connections: int = Field(1000, ge=1, description="open connections per server process; more get 503")
    json_depth: int = Field(32, ge=4, le=256, description="deepest nesting of a JSON body or parameter")
    json_nodes: int = Field(200_000, ge=100, description="most values in a JSON body or parameter")
    cql2_length: int = Field(20_000, ge=100, description="longest CQL2 filter (characters of text or JSON)")
    cql2_depth: int = Field(16, ge=2, le=128, description="deepest nesting of CQL2 expressions")
    cql2_nodes: int = Field(4000, ge=10, description="most CQL2 tokens (text) or JSON values (JSON)")
    geometry_vertices: int = Field(10_000, ge=4, description="most positions in one GeoJSON geometry")
    page_size: int = Field(
        1000, ge=1, description="largest `limit` (page) served: a larger one is capped to it, as STAC asks"
    )
    q_terms: int = Field(20, ge=1, le=1000, description="most free-text terms in `q`")
    q_length: int = Field(1000, ge=10, description="longest free-text `q` (characters)")
    statement_seconds: float = Field(20, gt=0, le=3600, description="PostgreSQL statement_timeout of the service")
    idle_in_transaction_seconds: float = Field(
        60, gt=0, le=3600, description="PostgreSQL idle_in_transaction_session_timeout of the service"
    )
    lock_seconds: float = Field(10, gt=0, le=3600, description="PostgreSQL lock_timeout of the service")

    @model_validator(mode="after")
    def statement_within_request(self) -> Limits:
        if self.statement_seconds >= self.request_seconds:
            raise ValueError(
                "statement_seconds must be below request_seconds: the database cancels a statement "
                "before the request's time budget runs out"
            )
        return self

    def postgres_options(self) -> dict[str, str]:
        """The session settings a service's database connections carry (milliseconds). JIT compilation is off: a
        backend compiling a huge generated filter ignored cancel and terminate (and short queries gain nothing)."""
        return {
            "statement_timeout": str(round(self.statement_seconds * 1000)),
            "idle_in_transaction_session_timeout": str(round(self.idle_in_transaction_seconds * 1000)),
            "lock_timeout": str(round(self.lock_seconds * 1000)),
            "jit": "off",
        }


def _limit_names(value: dict[str, float]) -> dict[str, float]:
    unknown = sorted(set(value) - set(Limits.model_fields))
    if unknown:
        raise ValueError(f"unknown limits: {', '.join(unknown)} (known: {', '.join(Limits.model_fields)})")
    return value


class Service(Strict):
    enabled: bool = True
    path: str = Field(description="public path prefix under the base URL, e.g. /stac; / for the web view")
    replicas: int = Field(1, ge=1, le=100)
    workers: int = Field(1, ge=1, le=32, description="server worker processes per replica")
    pool_size: int = Field(4, ge=1, le=100, description="database connections per worker at most")
    resources: Resources = Resources()
    worker_replicas: int = Field(1, ge=0, le=100, description="job worker processes (services with a worker)")
    worker_concurrency: int = Field(2, ge=1, le=64, description="jobs one worker process runs at once")
    rate_limit: RateLimit | None = Field(None, description="None: the service manifest's default")
    limits: Annotated[dict[str, float], AfterValidator(_limit_names)] = Field(
        {}, description="overrides of the platform's limits for this service, by field"
    )

    @field_validator("path")
    @classmethod
    def path_prefix(cls, value: str) -> str:
        if not re.fullmatch(r"/|(/[a-z0-9][a-z0-9-]*)+", value):
            raise ValueError(f"{value!r} must be / or like /stac (lowercase, no trailing slash)")
        return value


class LocalBackups(Strict):
    """Backups of a cluster the platform runs itself (embedded; on-premise): pgBackRest, WAL archived continuously."""

    enabled: bool = True
    every_hours: float = Field(24, gt=0, le=24 * 31, description="a base backup this often")
    full_every: int = Field(7, ge=1, le=100, description="a full backup every n intervals; differential otherwise")
    retention_full: int = Field(2, ge=1, le=100, description="full backups kept (with their WAL)")


class PgstacSearch(Strict):
    """How pgstac counts the matches of a search (`numberMatched`), set on the catalog's read connections.

    `auto` counts exactly only when the planner expects few matches or a cheap count; above both thresholds the
    answer carries the planner's estimate, marked as one. Counting a broad search exactly costs a scan of every
    match (seconds at millions of items), for a figure users read as "about how many"."""

    context: Literal["off", "on", "auto"] = Field("auto", description="off: no numberMatched; on: always exact")
    context_estimated_count: int = Field(1_000, ge=0, description="auto: estimate when more matches are expected")
    context_estimated_cost: float = Field(10_000, ge=0, description="auto: … and the planner's cost is above this")

    def session_settings(self) -> dict[str, str]:
        """pgstac reads its settings from `pgstac.*` session settings before its settings table."""
        return {
            "pgstac.context": self.context,
            "pgstac.context_estimated_count": str(self.context_estimated_count),
            "pgstac.context_estimated_cost": str(self.context_estimated_cost),
        }


class ReadReplica(Strict):
    """A streaming replica of the database: the services whose manifests say `replica_reads` send their reads
    there, writes and a client's reads right after its own write go to the primary (eolake_kit.replicas)."""

    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=1, le=65535, description="None: a free port (embedded only)")


class Database(Strict):
    embedded: bool = Field(True, description="a private cluster started by the embedded runner")
    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=1, le=65535, description="None: a free port (embedded only)")
    name: str = "eolake"
    user: str = "eolake"
    password_env: str | None = Field(None, description="environment variable holding the password")
    max_connections: int = Field(200, ge=10, description="what Postgres, or the pooler in front, accepts")
    reserved_connections: int = Field(10, ge=0, description="kept for migrations, ingest and admins")
    backups: LocalBackups = LocalBackups()
    pgstac: PgstacSearch = PgstacSearch()
    disk: Disk = Field("ssd", description="the database's storage: the planner's page costs and read-ahead follow it")
    settings: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)?$")], str] = Field(
        {},
        description="PostgreSQL settings (name: value) that win over those derived from the database's machine "
        "(eolake_spec.tuning), in every target",
    )
    replica: ReadReplica | None = Field(
        None,
        description="embedded: a streaming replica of the private cluster, started beside it; otherwise where one "
        "listens. None: reads go to the primary (on Kubernetes, the `-ro` service once postgres.instances > 1)",
    )
    max_replica_lag_seconds: float = Field(
        5, gt=0, le=300, description="reads go to the primary while the replica replays more than this far behind"
    )

    @model_validator(mode="after")
    def replica_port(self) -> Database:
        if self.replica and self.replica.port is None and not self.embedded:
            raise ValueError("database.replica.port: a replica that is not embedded needs its port")
        return self

    def server_settings(self, machine: Machine) -> dict[str, str]:
        """What the server runs with: the settings derived from `machine`, then this spec's own."""
        return {**postgres_settings(machine, self.max_connections, self.disk), **self.settings}


class Auth(Strict):
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    roles_claim: str = "realm_access.roles"

    @model_validator(mode="after")
    def issuer_needs_audience(self) -> Auth:
        if self.oidc_issuer and not (self.oidc_audience and self.oidc_jwks_url):
            raise ValueError("oidc_issuer needs oidc_audience and oidc_jwks_url")
        return self


class Notifier(Strict):
    """Where a receiver's notifications go: exactly one of a webhook URL or an e-mail address."""

    webhook: AnyHttpUrl | None = None
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$")

    @model_validator(mode="after")
    def exactly_one(self) -> Notifier:
        if (self.webhook is None) == (self.email is None):
            raise ValueError("a notifier is either {webhook: URL} or {email: address}")
        return self


class Smtp(Strict):
    smarthost: str = Field(pattern=r"^[^:\s]+:\d+$", description="host:port of the mail relay")
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")


class Receivers(Strict):
    """Alertmanager's receivers by name (routes in monitoring/alertmanager/alertmanager.yml); empty: nothing sent."""

    page: list[Notifier] = Field(default_factory=list, description="someone must act now")
    ticket: list[Notifier] = Field(default_factory=list, description="someone must act within working hours")
    heartbeat: list[Notifier] = Field(default_factory=list, description="the Watchdog's dead man's switch")
    smtp: Smtp | None = None

    @model_validator(mode="after")
    def email_needs_smtp(self) -> Receivers:
        if self.smtp is None and any(n.email for n in (*self.page, *self.ticket, *self.heartbeat)):
            raise ValueError("an e-mail notifier needs receivers.smtp (smarthost and sender)")
        return self


class Observability(Strict):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    otlp_endpoint: str | None = Field(None, description="OTLP/HTTP traces endpoint; tracing export off when unset")
    trace_sample_ratio: float = Field(
        0.1,
        ge=0,
        le=1,
        description="share of requests traced, decided at the edge (services follow their caller's decision)",
    )
    prometheus: bool = Field(True, description="embedded: run Prometheus (Debian package) with eolake's rules")
    prometheus_port: int | None = Field(None, ge=1, le=65535, description="embedded; None: a free port")
    alertmanager: bool = Field(True, description="embedded: run Alertmanager too, when it is installed")
    alertmanager_port: int | None = Field(None, ge=1, le=65535, description="embedded; None: a free port")
    scrape_interval_seconds: int = Field(15, ge=1, le=300)
    retention: str = Field("15d", pattern=r"^\d+[hdwy]$", description="Prometheus keeps samples this long")
    retention_size: str = Field(
        "2GB", pattern=r"^\d+(MB|GB|TB)$", description="and at most this much disk (the oldest blocks go first)"
    )
    receivers: Receivers = Field(default_factory=Receivers)
    matomo_url: str | None = None
    matomo_site_id: int | None = None

    @model_validator(mode="after")
    def matomo_needs_site(self) -> Observability:
        if self.matomo_url and self.matomo_site_id is None:
            raise ValueError("matomo_url needs matomo_site_id")
        return self


class Supervision(Strict):
    """Embedded: how the supervisor tells a hung instance (stopped, deadlocked) from a busy one by its liveness
    probe, which touches no dependency. Kubernetes and systemd hosts have their own probes (infra/, playbooks/)."""

    liveness_period_seconds: float = Field(
        1.0, ge=0.2, le=60, description="between two liveness probes of one instance"
    )
    liveness_timeout_seconds: float = Field(1.5, gt=0, le=60, description="a probe not answered within it failed")
    liveness_failures: int = Field(
        3,
        ge=1,
        le=20,
        description="failed probes in a row: the instance is hung, "
        "killed and replaced (after the first, it gets no new "
        "request while another instance answers)",
    )


class Image(Strict):
    repository: str = Field(pattern=r"^[a-z0-9][a-z0-9./_:-]*[a-z0-9]$", description="registry/name, no tag")
    tag: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", description="an immutable version")

    @field_validator("tag")
    @classmethod
    def not_latest(cls, value: str) -> str:
        if value == "latest":
            raise ValueError("'latest' is not a version: pin the tag the CI built (e.g. 0.3.1 or a git sha)")
        return value

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


class Autoscaling(Strict):
    max_replicas: int = Field(ge=1, le=100, description="services.<name>.replicas is the minimum")
    cpu_percent: int = Field(70, ge=10, le=100, description="target average CPU, percent of the request")
    requests_per_second: float = Field(20, gt=0, description="target per pod (prometheus-adapter metric)")


class Gateway(Strict):
    """Gateway API: the Gateway the platform's HTTPRoute attaches to."""

    name: str = Field("eolake", pattern=DNS_LABEL)
    namespace: str | None = Field(None, pattern=DNS_LABEL, description="None: the stack's namespace")
    class_name: str | None = Field(
        None,
        description="create this Gateway, of this GatewayClass (HTTPS for the base "
        "URL's host, HTTP redirected); None: attach to an existing "
        "Gateway, whose owner runs TLS and admits our namespace",
    )
    section: str | None = Field(None, description="the listener of an existing Gateway to attach to")


class Ingress(Strict):
    kind: Literal["nginx", "gateway"] = Field(
        "nginx", description="an Ingress for ingress-nginx, or a Gateway API HTTPRoute (+ Gateway)"
    )
    class_name: str = Field("nginx", description="IngressClass (kind nginx)")
    tls_issuer: str = Field("letsencrypt", description="cert-manager ClusterIssuer")
    tls_secret: str = "eolake-tls"
    body_size: str = Field("10m", pattern=r"^\d+[kmg]?$", description="largest request body (ingress-nginx)")
    rate_limit_rps: int = Field(50, ge=1, description="requests per second per client IP (ingress-nginx)")
    gateway: Gateway = Gateway()
    controller_namespace: str | None = Field(
        None,
        pattern=DNS_LABEL,
        description="where the proxy pods that forward to the services run; None: ingress-nginx (kind nginx)",
    )
    controller_labels: dict[str, str] | None = Field(
        None,
        description="labels of those pods; None: "
        "app.kubernetes.io/name=ingress-nginx (kind nginx), every pod "
        "of controller_namespace (kind gateway)",
    )

    @model_validator(mode="after")
    def gateway_needs_its_proxies(self) -> Ingress:
        if self.kind == "gateway" and not self.controller_namespace:
            raise ValueError(
                "kind gateway needs controller_namespace: the namespace of the Gateway's proxy pods "
                "(e.g. envoy-gateway-system), which the NetworkPolicies admit"
            )
        return self

    @property
    def proxy_namespace(self) -> str:
        return self.controller_namespace or "ingress-nginx"

    @property
    def proxy_labels(self) -> dict[str, str]:
        if self.controller_labels is not None:
            return self.controller_labels
        return {"app.kubernetes.io/name": "ingress-nginx"} if self.kind == "nginx" else {}


class Backup(Strict):
    destination: str = Field(pattern=r"^s3://[a-z0-9.-]+(/.*)?$", description="s3://bucket/path for base backups+WAL")
    endpoint: str | None = Field(None, description="S3-compatible endpoint URL; None: AWS")
    credentials_secret: str | None = Field(None, description="Secret with ACCESS_KEY_ID and ACCESS_SECRET_KEY")
    schedule: str = Field("0 0 2 * * *", description="CNPG cron, with seconds")
    retention: str = Field("30d", pattern=r"^\d+[dwm]$")

    @model_validator(mode="after")
    def needs_credentials(self) -> Backup:
        if not self.credentials_secret:
            raise ValueError(
                "backups to S3 need credentials_secret: the name of a Secret holding "
                "ACCESS_KEY_ID and ACCESS_SECRET_KEY"
            )
        return self


class Recovery(Strict):
    """Bootstrap the cluster from the object-store backups of another one (point-in-time recovery)."""

    source: str = Field(pattern=DNS_LABEL, description="the cluster whose base backups and WAL archive to restore")
    target_time: datetime | None = Field(
        None, description="replay WAL up to this moment (with a time zone); None: up to the end of the archive"
    )
    destination: str | None = Field(
        None,
        pattern=r"^s3://[a-z0-9.-]+(/.*)?$",
        description="where the source archived (its backup.destination); None: the same "
        "as this stack's backup.destination",
    )
    endpoint: str | None = Field(None, description="S3-compatible endpoint URL; None: backup.endpoint")
    credentials_secret: str | None = Field(None, description="None: backup.credentials_secret")

    @field_validator("target_time")
    @classmethod
    def with_time_zone(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("target_time needs a time zone, e.g. 2026-01-31T10:41:00+00:00")
        return value


class Postgres(Strict):
    cluster_name: str = Field(
        "eolake-db",
        pattern=DNS_LABEL,
        description="the CloudNativePG Cluster; its Services "
        "are <name>-rw/-ro/-r. A recovery is a "
        "new name with `recovery`",
    )
    instances: int = Field(1, ge=1, le=9, description="CloudNativePG instances: 1 primary + replicas")
    image: Image = Image(repository="ghcr.io/cloudnative-pg/postgis", tag="16-3.4")
    storage_size: str = Field("10Gi", pattern=QUANTITY.pattern)
    storage_class: str | None = None
    resources: Resources = Field(
        Resources(cpu_request="500m", cpu_limit="2", memory_request="1Gi", memory_limit="2Gi"),
        description="of each PostgreSQL instance; its settings (shared_buffers, work_mem…) follow the limits",
    )
    backup: Backup | None = None
    recovery: Recovery | None = None

    @model_validator(mode="after")
    def recovery_from_elsewhere(self) -> Postgres:
        if self.recovery is None:
            return self
        if self.recovery.source == self.cluster_name:
            raise ValueError(
                f"recovery.source is {self.cluster_name!r}, the cluster itself: recover into a new "
                "cluster_name (e.g. eolake-db-2), so that it never writes into the archive it restores"
            )
        if not self.backup and not (self.recovery.destination and self.recovery.credentials_secret):
            raise ValueError(
                "recovery needs to know where the source's backups are: set backup (the same "
                "destination) or recovery.destination and recovery.credentials_secret"
            )
        return self

    def recovery_store(self) -> dict[str, str | None]:
        """Where the recovery reads the source's backups: its own fields, else this stack's backup's."""
        r, b = self.recovery, self.backup
        assert r is not None  # asked of a stack that recovers
        return {
            "destination": r.destination or (b.destination if b else None),
            "endpoint": r.endpoint or (b.endpoint if b else None),
            "credentials_secret": r.credentials_secret or (b.credentials_secret if b else None),
        }

    @model_validator(mode="after")
    def resources_run_postgres(self) -> Postgres:
        self.machine()  # refuses limits too small for PostgreSQL with pgstac
        return self

    def machine(self) -> Machine:
        """What one instance may use, as the tuning reads it: its limits."""
        return Machine(memory=self.resources.memory_limit_bytes, cpus=max(1, math.ceil(self.resources.cpu_limit_cores)))


class Pooler(Strict):
    instances: int = Field(2, ge=1, le=9)
    max_client_connections: int = Field(1000, ge=10, description="per PgBouncer instance")


class Releases(Strict):
    kube_prometheus_stack: bool = True
    prometheus_adapter: bool = Field(True, description="serves eolake_http_requests_per_second to the HPAs")
    jaeger: bool = True
    matomo: bool = False
    keycloak: bool = False


class KubernetesSecrets(Strict):
    app_database: str = Field("eolake-app-db", description="basic-auth Secret of the eolake_app role")
    api_keys: str | None = Field(None, description="Secret with an `api-keys` file for the services")
    grafana_admin: str = Field("eolake-grafana-admin", description="Secret with admin-user and admin-password")
    signing: str = Field(
        "eolake-signing",
        description="Secret with `signing-key`: the platform's HMAC key "
        "(federated search page tokens), at least 32 characters",
    )
    storage: str | None = Field(
        None,
        description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY of the "
        "storage bucket; needed when storage is s3",
    )
    amqp: str = Field(
        "eolake-amqp",
        description="Secret with `amqp-url`: amqp://user:password@host:port/vhost of "
        "the events broker (when events are configured)",
    )


class Kubernetes(Strict):
    """What only the Kubernetes target needs; everything else comes from the rest of the spec."""

    namespace: str = Field("eolake", pattern=r"^[a-z0-9][a-z0-9-]*$")
    monitoring_namespace: str = Field("monitoring", pattern=r"^[a-z0-9][a-z0-9-]*$")
    images: dict[str, Image] = Field({}, description="one per enabled service, plus `migrate`")
    autoscaling: dict[str, Autoscaling] = Field({}, description="by service name; `<name>-worker` for workers")
    ingress: Ingress = Ingress()
    postgres: Postgres = Postgres()
    pooler: Pooler = Pooler()
    releases: Releases = Releases()
    secrets: KubernetesSecrets = KubernetesSecrets()


class Host(Strict):
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", description="the host's inventory name")
    address: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]*$",
        description="IP address or DNS name where Ansible and the other hosts reach it",
    )


class Tls(Strict):
    certificate: str | None = Field(
        None,
        description="PEM certificate chain on the controller; unset: a "
        "self-signed certificate generated on the proxy host",
    )
    key: str | None = Field(None, description="its PEM private key on the controller")

    @model_validator(mode="after")
    def both_or_neither(self) -> Tls:
        if bool(self.certificate) != bool(self.key):
            raise ValueError("tls needs both certificate and key (or neither, for a self-signed certificate)")
        return self


class OnPrem(Strict):
    """What only the on-premise target (playbooks/, Ansible) needs: which hosts run what."""

    database: Host
    database_replica: Host | None = Field(
        None,
        description="a streaming standby of `database` the playbooks set up (replication slot, pg_basebackup); the "
        "services that read from a replica read there. Unset: none, or one you run yourself (database.replica)",
    )
    app: list[Host] = Field(min_length=1, description="the hosts running every service; the proxy balances them")
    proxy: Host
    monitoring: Host | None = Field(None, description="Prometheus and Alertmanager; unset: no monitoring")
    ssh_user: str = Field("root", pattern=r"^[a-z_][a-z0-9_-]*$", description="Ansible's SSH user (becomes root)")
    tls: Tls = Tls()
    body_size: str = Field("10m", pattern=r"^\d+[kmg]?$", description="largest request body (nginx)")
    proxy_timeout_seconds: int = Field(60, ge=1, le=3600, description="reading an upstream answer (nginx)")
    credentials_dir: str = Field(
        "credentials",
        description="where the controller generates and keeps the passwords and keys, relative to the inventory",
    )
    shared_storage: bool = Field(
        False,
        description="storage.path is one shared filesystem (NFS…) mounted on "
        "every app host: needed with local storage and several hosts",
    )

    @model_validator(mode="after")
    def one_address_per_host(self) -> OnPrem:
        addresses: dict[str, str] = {}
        for host in self.hosts():
            if addresses.setdefault(host.name, host.address) != host.address:
                raise ValueError(f"host {host.name} has two addresses: {addresses[host.name]} and {host.address}")
        if self.database_replica and self.database_replica.name == self.database.name:
            raise ValueError(
                f"onprem.database_replica must be another host than onprem.database ({self.database.name})"
            )
        names = [h.name for h in self.app]
        if len(set(names)) != len(names):
            raise ValueError(f"app hosts are listed twice: {', '.join(sorted(names))}")
        return self

    def hosts(self) -> list[Host]:
        optional = [h for h in (self.database_replica, self.monitoring) if h]
        return [self.database, *self.app, self.proxy, *optional]


class Platform(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    base_url: AnyHttpUrl = Field(description="the one public base URL; every service lives under a path prefix")
    services: dict[ServiceName, Service] = Field(description="by service name (an installed service manifest)")
    database: Database = Database()
    storage: Storage = Storage()
    auth: Auth = Auth()
    cors_origins: list[str] = Field(
        ["*"],
        description='origins whose pages may call the services (["*"]: any '
        "page, for open data; never with credentials)",
    )
    observability: Observability = Observability()
    supervision: Supervision = Supervision()
    providers: list[Provider] = []
    priorities: dict[str, list[str]] = Field(
        {},
        description=(
            "per collection ('*': every other one), its providers in the order to use them: a search or an order "
            "that names no provider uses the first that answers, and says which; `local` is the platform's own "
            "catalog and storage"
        ),
    )
    events: Events | None = Field(
        None,
        description="the broker and exchange of the events service; unset: the "
        "events service is off, whatever `services` says",
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        [ip_network("127.0.0.0/8"), ip_network("::1/128")],
        description="addresses whose X-Forwarded-For is believed (the gateway, ingress or reverse proxy, and the "
        "services calling each other); a request from one of them without it is the platform's own call",
    )
    limits: Limits = Field(Limits(), description="request and database bounds of every service (overridable)")
    kubernetes: Kubernetes | None = Field(None, description="the Kubernetes target (infra/)")
    cluster: Cluster = Field(
        ExistingCluster(),
        description="where the Kubernetes target's cluster comes from: `existing`, or provisioned on `openstack`",
    )
    onprem: OnPrem | None = Field(None, description="the on-premise target (playbooks/)")

    @field_validator("services", mode="before")
    @classmethod
    def default_paths(cls, value: object) -> object:
        if isinstance(value, dict):
            known = manifests()
            return {
                k: {"path": known[k].path, **(v or {})} if k in known and isinstance(v, dict | None) else v
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def consistent(self) -> Platform:
        missing = sorted(
            {
                f"{name} → {call}"
                for name in self.enabled_services
                for call in manifest(name).calls
                if call not in self.enabled_services
            }
        )
        if missing:
            raise ValueError(f"enabled services call services that are not enabled: {', '.join(missing)}")
        paths: dict[str, str] = {}
        for name, service in self.enabled_services.items():
            if service.path in paths:
                raise ValueError(f"services {paths[service.path]} and {name} share the path {service.path}")
            paths[service.path] = name
        if self.base_url.path not in (None, "/"):
            raise ValueError("base_url must not have a path: services get their prefix from services.<name>.path")
        for name in self.enabled_services:
            try:
                self.limits_of(name)
            except ValidationError as exc:
                reasons = "; ".join(e["msg"] for e in exc.errors())
                raise ValueError(f"services.{name}.limits: {reasons}") from None
        self._onprem_consistent()
        check_priorities(self.priorities, self.providers)
        check_broker_target(self.events, "events" in self.enabled_services, bool(self.kubernetes or self.onprem))
        used, budget = self.connection_budget()
        if used > budget:
            raise ValueError(
                f"connection budget exceeded: services need {used} database connections "
                f"(replicas × workers × pool_size) but database.max_connections − reserved_connections is {budget}"
            )
        return self

    def _onprem_consistent(self) -> None:
        if not self.onprem:
            return
        if self.database.embedded:
            raise ValueError("onprem runs PostgreSQL on onprem.database: set database.embedded to false")
        if self.onprem.database_replica and self.database.replica:
            raise ValueError(
                "onprem.database_replica is the standby the playbooks set up, database.replica one you run "
                "yourself: give one of them"
            )
        if self.storage.kind == "local":
            if not self.storage.path.startswith("/"):
                raise ValueError(f"onprem: storage.path must be absolute on the app hosts, not {self.storage.path!r}")
            if len(self.onprem.app) > 1 and not self.onprem.shared_storage:
                raise ValueError(
                    "onprem: several app hosts with local storage need storage.path on a shared "
                    "filesystem (then set onprem.shared_storage: true) or storage.kind s3"
                )

    @property
    def enabled_services(self) -> dict[str, Service]:
        """Those the stack enables, when the spec has the sections their manifests require."""
        return {
            name: s
            for name, s in self.services.items()
            if s.enabled and all(getattr(self, section) is not None for section in manifest(name).requires)
        }

    def limits_of(self, service: str) -> Limits:
        """The platform's limits with the service's overrides."""
        return Limits.model_validate({**self.limits.model_dump(), **self.services[service].limits})

    def edge_limits(self) -> Limits:
        """What the edge (the gateway) lets through: the largest of every enabled service's limits, and a time
        budget past theirs, so each service's own bound answers first."""
        each = [self.limits_of(name).model_dump() for name in self.enabled_services] or [self.limits.model_dump()]
        widest = {field: max(limits[field] for limits in each) for field in Limits.model_fields}
        widest["body_min_rate"] = min(limits["body_min_rate"] for limits in each)
        return Limits.model_validate(
            {
                **widest,
                "request_seconds": min(600, widest["request_seconds"] + 10),
                "connections": self.limits.connections,
            }
        )

    def connection_budget(self) -> tuple[int, int]:
        used = sum(
            self.connections(name, self.replicas(name), self.worker_replicas(name)) for name in self.enabled_services
        )
        return used, self.database.max_connections - self.database.reserved_connections

    def replicas(self, service: str) -> int:
        """On premise every app host runs every service once; elsewhere the spec's replicas."""
        return len(self.onprem.app) if self.onprem else self.services[service].replicas

    def worker_replicas(self, service: str) -> int:
        spec = self.services[service]
        return spec.worker_replicas * len(self.onprem.app) if self.onprem else spec.worker_replicas

    def connections(self, service: str, replicas: int, worker_replicas: int) -> int:
        """Database connections of a service at these replica counts: servers, plus its job workers."""
        m, s = manifest(service), self.services[service]
        if not m.database:
            return 0
        workers = worker_replicas * m.worker.connections(s.worker_concurrency) if m.worker else 0
        return replicas * s.workers * s.pool_size + workers

    def manifest(self, service: str) -> ServiceManifest:
        return manifest(service)

    def reads_from_replica(self, service: str) -> bool:
        """Whether the service reads from a replica: it can (its manifest), and the target has one (the spec's
        `database.replica`, CloudNativePG's replicas, or the on-premise standby `onprem.database_replica`)."""
        instances = self.kubernetes.postgres.instances if self.kubernetes else 1
        standby = self.onprem is not None and self.onprem.database_replica is not None
        return manifest(service).replica_reads and (self.database.replica is not None or instances > 1 or standby)

    def service_env(
        self, service: str, origins: dict[str, str] | None = None, observers: dict[str, str] | None = None
    ) -> dict[str, str]:
        """The settings a service reads from its environment (EOLAKE_<SERVICE>_*), without secrets or ports.

        `origins`: where the target runs each service (scheme://host:port); the services it calls are then reached
        there (PEERS), never through the public base URL. `observers`: where the target runs Prometheus,
        Alertmanager and a trace store (OBSERVERS: name → internal URL), which the web view's operations console
        reads through its admin-only proxy."""
        s, obs, auth = self.services[service], self.observability, self.auth
        values = {
            "PUBLIC_URL": str(self.base_url).rstrip("/"),
            "ROOT_PATH": "" if s.path == "/" else s.path,
            "WORKERS": s.workers,
            "POOL_SIZE": s.pool_size,
            "LOG_LEVEL": obs.log_level,
            "OTLP_ENDPOINT": obs.otlp_endpoint,
            "TRACE_SAMPLE_RATIO": obs.trace_sample_ratio,
            "MATOMO_URL": obs.matomo_url,
            "MATOMO_SITE_ID": obs.matomo_site_id,
            "AUTH__OIDC_ISSUER": auth.oidc_issuer,
            "AUTH__OIDC_AUDIENCE": auth.oidc_audience,
            "AUTH__OIDC_JWKS_URL": auth.oidc_jwks_url,
            "AUTH__ROLES_CLAIM": auth.roles_claim,
            "TRUSTED_PROXIES": json.dumps([str(network) for network in self.trusted_proxies]),
            "LIMITS": self.limits_of(service).model_dump_json(),
            "CORS_ORIGINS": json.dumps(self.cors_origins),
        }
        m = manifest(service)
        if m.rate_limited:
            rate = s.rate_limit or RateLimit(requests_per_second=m.rate_limit[0], burst=m.rate_limit[1])
            values |= {"RATE_LIMIT__REQUESTS_PER_SECOND": rate.requests_per_second, "RATE_LIMIT__BURST": rate.burst}
        if m.storage != "none":  # the spec's storage (a local STORAGE_PATH is set per target)
            values |= {
                "STORAGE_KIND": self.storage.kind,
                "S3_BUCKET": self.storage.bucket,
                "S3_ENDPOINT": self.storage.endpoint,
                "S3_REGION": self.storage.region,
            }
            if self.storage.kind == "s3":  # what a reader may open there (the tiles' allow-list)
                values["ALLOWED_PREFIXES"] = json.dumps([f"s3://{self.storage.bucket}/"])
        if m.worker:
            values["WORKER_CONCURRENCY"] = s.worker_concurrency
        if service == "search":  # the enabled providers; the local catalog is always one (the search service adds it)
            values["PROVIDERS"] = json.dumps([p.model_dump(exclude={"enabled"}) for p in self.providers if p.enabled])
        if service in ("search", "downloads") and self.priorities:
            values["PRIORITIES"] = json.dumps(self.priorities)
        if service == "downloads" and self.storage.offline:  # its folder is set per target, like STORAGE_PATH
            values["OFFLINE_DELAY_SECONDS"] = self.storage.offline.delay_seconds
        if service == "events" and self.events:  # where it publishes, and the `source` of each service's events
            values |= {
                "EXCHANGE": self.events.exchange,
                "SOURCES": json.dumps(
                    {n: self.public_url(n) for n in ("catalog", "downloads") if n in self.enabled_services}
                ),
            }
        if service == "catalog":  # how its searches count matches
            values["PGSTAC"] = self.database.pgstac.model_dump_json()
        if self.reads_from_replica(service):  # READ_DATABASE_URL, with its password, is set per target
            values["MAX_REPLICA_LAG_SECONDS"] = self.database.max_replica_lag_seconds
        if service == "web":  # the services it links to and polls: those the platform runs, at their prefixes
            values["SERVICES"] = json.dumps({n: x.path for n, x in self.enabled_services.items() if x.path != "/"})
        if service == "web" and observers:
            values["OBSERVERS"] = json.dumps(observers, sort_keys=True)
        if origins:
            values["PEERS"] = json.dumps(self.peers(service, origins), sort_keys=True)
        prefix = f"EOLAKE_{service.upper()}_"
        return {prefix + k: str(v) for k, v in values.items() if v is not None}

    def peers(self, service: str, origins: dict[str, str]) -> dict[str, dict[str, str]]:
        """The enabled services `service` calls (its manifest's `calls`) as it reaches them: the internal address
        (`origins`: scheme://host:port of each service, from the target) and the public URL its links carry."""
        return {
            name: {
                "url": origins[name].rstrip("/") + self.services[name].path.rstrip("/"),
                "public_url": self.public_url(name),
            }
            for name in manifest(service).calls
            if name in self.enabled_services
        }

    def public_url(self, service: str) -> str:
        """The public URL of a service, without a trailing slash (the web view is the base URL itself)."""
        return str(self.base_url).rstrip("/") + self.services[service].path.rstrip("/")
