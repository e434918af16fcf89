"""The platform spec (stacks/Pulumi.<stack>.yaml) and the service manifests: the bottom of eolake, imported by the
embedded runner, the Kubernetes program and the on-premise inventory alike."""

from eolake_spec.cluster import ExistingCluster, OpenStackCluster
from eolake_spec.manifest import PublicRoute, ServiceManifest, Worker, manifest, manifests
from eolake_spec.platform import (
    Host,
    Kubernetes,
    Limits,
    OnPrem,
    PgstacSearch,
    Platform,
    Service,
)
from eolake_spec.stackfile import STACKS_DIR, SpecError, load_stack, stack_file

__all__ = [
    "STACKS_DIR",
    "ExistingCluster",
    "Host",
    "Kubernetes",
    "Limits",
    "OnPrem",
    "OpenStackCluster",
    "PgstacSearch",
    "Platform",
    "PublicRoute",
    "Service",
    "ServiceManifest",
    "SpecError",
    "Worker",
    "load_stack",
    "manifest",
    "manifests",
    "stack_file",
]
