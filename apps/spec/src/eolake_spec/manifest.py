"""What a service IS, declared once in its own package and discovered through the `eolake.services` entry points.

The spec, the three targets (embedded, Kubernetes, on-premise), the Dockerfiles, the dashboards and the network
policies all read the manifests; nothing restates them.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Literal

GROUP = "eolake.services"
NAME = re.compile(r"^[a-z][a-z0-9]*$")
PATH = re.compile(r"^/|(/[a-z0-9][a-z0-9-]*)+$")


@dataclass(frozen=True)
class Worker:
    """Processes that come with a service and serve no route (its job workers)."""

    module: str  # run as `python -m module` with the service's settings
    metrics_port: int  # its /metrics and its probes, in containers and on hosts
    queue_metric: str | None = None  # a gauge of queued jobs: workers scale on it
    base_connections: int = 4  # database connections a worker process holds besides one per running job
    liveness: str = "/healthz"  # on metrics_port: the process turns (never the database)
    readiness: str = "/readyz"  # on metrics_port: its job loop runs and reaches the database

    def connections(self, concurrency: int) -> int:
        return self.base_connections + concurrency


@dataclass(frozen=True)
class PublicRoute:
    """A route whose method is not GET yet is open to anonymous callers on purpose (a read sent over POST).

    Every other non-GET route needs a role; the write-inventory test holds each service to this list.
    """

    method: str
    path: str  # the route template below the service prefix; `*` matches any run of characters
    reason: str

    def matches(self, method: str, path: str) -> bool:
        return method.upper() == self.method.upper() and fnmatch.fnmatchcase(path, self.path)


@dataclass(frozen=True)
class ServiceManifest:
    name: str
    title: str  # the Kubernetes component: eolake:service:<title>
    summary: str
    path: str  # the default public path prefix; a stack may move it
    port: int  # where it listens in a container or on a host
    settings: str  # "module:Class", the service's settings (env prefix EOLAKE_<NAME>_)
    database: bool = False  # holds connections to PostgreSQL (counted in the connection budget)
    replica_reads: bool = False  # can send its reads to a streaming replica (READ_DATABASE_URL), writes to the primary
    schema: str | None = None  # module whose `python -m` creates the service's own schema, after pgstac's
    worker: Worker | None = None
    prepare: str | None = None  # module run (python -m) before the server, filling its read-only STORAGE_PATH
    calls: tuple[str, ...] = ()  # the platform services it sends requests to, by name
    storage: Literal["none", "read", "write"] = "none"  # the platform's storage (local path or bucket)
    secrets: tuple[str, ...] = ()  # platform secrets it reads: "signing" (page tokens), "storage" (S3 keys)
    openapi: str | None = "/openapi.json"  # where it serves its OpenAPI document, below its prefix
    public_routes: tuple[PublicRoute, ...] = ()  # non-GET routes open to anyone, each with its reason
    gdal: bool = False  # reads the storage through GDAL, which takes its S3 settings from AWS_* variables
    liveness: str = "/healthz"  # touches no dependency
    readiness: str = "/readyz"  # its dependencies answer
    # Expensive routes, rate-limited per user or client address: regular expressions matched at the start of
    # "METHOD /path" (the path below the service's prefix), e.g. r"(GET|POST) /search$".
    rate_limited: tuple[str, ...] = ()
    rate_limit: tuple[float, int] = (20, 60)  # default (requests per second, burst) for those; the spec may change it
    requires: tuple[str, ...] = ()  # sections of the spec that must be set for it to run (else it is off everywhere)

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ValueError(f"service name {self.name!r}: lowercase letters and digits")
        if not PATH.fullmatch(self.path):
            raise ValueError(f"service {self.name}: path {self.path!r} is not / or like /stac")
        for pattern in self.rate_limited:
            re.compile(pattern)

    @property
    def module(self) -> str:
        """`python -m <module>` serves it."""
        return self.settings.split(".", 1)[0]

    @property
    def env_prefix(self) -> str:
        return f"EOLAKE_{self.name.upper()}_"

    def public_route(self, method: str, path: str) -> PublicRoute | None:
        return next((r for r in self.public_routes if r.matches(method, path)), None)

    def settings_class(self) -> type:
        module, _, attr = self.settings.partition(":")
        return getattr(importlib.import_module(module), attr)


@functools.cache
def manifests() -> dict[str, ServiceManifest]:
    """Every installed service, by name, in name order; a broken manifest fails loudly."""
    found: dict[str, ServiceManifest] = {}
    for point in entry_points(group=GROUP):
        manifest = point.load()
        if not isinstance(manifest, ServiceManifest) or manifest.name != point.name:
            raise TypeError(f"entry point {GROUP}:{point.name} is not the ServiceManifest of {point.name}")
        found[manifest.name] = manifest
    unknown = {(m.name, c) for m in found.values() for c in m.calls if c not in found}
    if unknown:
        raise ValueError(
            "manifests call services that are not installed: " + ", ".join(f"{a} → {b}" for a, b in sorted(unknown))
        )
    return dict(sorted(found.items()))


def manifest(name: str) -> ServiceManifest:
    try:
        return manifests()[name]
    except KeyError:
        raise KeyError(f"no service {name!r} is installed (known: {', '.join(manifests())})") from None
