"""Helpers for the infra tests: the Pulumi program run under mocks, once per stack, and lookups in its result."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from eolake.paths import REPO_ROOT
from eolake_infra import config, releases, render
from eolake_spec import load_stack

__all__ = ["config", "releases", "render"]

STACKS = ["dev", "staging", "prod"]
RENDERED = REPO_ROOT / "infra" / "rendered"


class _Revealing(render._Monitor):
    """Also keeps every resource's inputs with the secrets unmasked (by URN), to follow a secret to where it goes."""

    def __init__(self):
        super().__init__()
        self.inputs: dict[str, dict] = {}

    def RegisterResource(self, request):
        from pulumi.runtime import rpc

        response = super().RegisterResource(request)
        self.inputs[response.urn] = rpc.deserialize_properties_unwrap_secrets(request.object)[0]
        return response


class Program:
    def __init__(self, stack: str, resources: list[render.Recorded], inputs: dict[str, dict] | None = None):
        self.resources = resources
        self.inputs = inputs or {}
        self.by_urn = {r.urn: r for r in resources}
        self.context = config.resolve(load_stack(stack), stack)

    def of_kind(self, kind: str) -> list[dict]:
        return [r.manifest for r in self.resources if r.manifest and r.manifest["kind"] == kind]

    def one(self, kind: str, name: str) -> dict:
        found = [m for m in self.of_kind(kind) if m["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def recorded(self, kind: str, name: str) -> render.Recorded:
        return next(
            r
            for r in self.resources
            if r.manifest and r.manifest["kind"] == kind and r.manifest["metadata"]["name"] == name
        )

    def type_of(self, urn: str) -> str:
        return self.by_urn[urn].type


@functools.cache
def program(stack: str) -> Program:
    monitor = _Revealing()
    return Program(stack, render.run(stack, monitor=monitor), monitor.inputs)


@functools.cache
def rendered_files(stack: str) -> dict[str, str]:
    """File name → text, as `eolake render` writes it (with cluster/ for a stack that provisions its cluster)."""
    return {
        **{name: render.dump(doc) for name, doc in render.documents(program(stack).resources).items()},
        **render.user_data(stack),
    }


@functools.cache
def rendered(stack: str) -> dict[str, str]:
    """The Kubernetes manifests and Helm release inputs among them."""
    return {name: text for name, text in rendered_files(stack).items() if not name.startswith("cluster/")}


def write_stack(directory: Path, name: str, edit) -> Path:
    """A copy of a real stack with `edit(platform_dict)` applied, as a stack file in `directory`."""
    import yaml

    document = yaml.safe_load((REPO_ROOT / "stacks" / f"Pulumi.{name}.yaml").read_text())
    edit(document["config"]["eolake:platform"])
    path = directory / f"Pulumi.{name}-edited.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


RECOVERY_TARGET = "2026-01-31T10:41:00+00:00"


def recovering(platform: dict) -> None:
    """prod after a bad ingest: a new cluster, restored from eolake-db's backups up to a minute before it."""
    platform["kubernetes"]["postgres"] |= {
        "cluster_name": "eolake-db-2",
        "recovery": {"source": "eolake-db", "target_time": RECOVERY_TARGET},
    }


def own_gateway(platform: dict) -> None:
    """prod behind Gateway API: its own Gateway (Envoy Gateway's class), proxies in envoy-gateway-system."""
    platform["kubernetes"]["ingress"] |= {
        "kind": "gateway",
        "gateway": {"class_name": "eg"},
        "controller_namespace": "envoy-gateway-system",
        "controller_labels": None,
    }


def shared_gateway(platform: dict) -> None:
    """staging attached to a Gateway another team runs (Istio's ingress gateway pods in istio-ingress)."""
    platform["kubernetes"]["ingress"] = {
        "kind": "gateway",
        "gateway": {"name": "public", "namespace": "gateways", "section": "https"},
        "controller_namespace": "istio-ingress",
        "controller_labels": {"istio": "ingressgateway"},
    }


# Stacks the tests derive from the committed ones: label → (stack, edit of its platform).
VARIANTS = {
    "prod-recovery": ("prod", recovering),
    "prod-gateway": ("prod", own_gateway),
    "staging-shared-gateway": ("staging", shared_gateway),
}


@functools.cache
def variant(label: str) -> str:
    """The stack file of a variant, written once per test session."""
    stack, edit = VARIANTS[label]
    directory = Path(tempfile.mkdtemp(prefix=f"eolake-{label}-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return str(write_stack(directory, stack, edit))
