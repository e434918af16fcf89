"""Helpers for the infra tests: the Pulumi program run under mocks, once per stack, and lookups in its result."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from eolake.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "infra"))

from eolake_infra import config, releases, render  # noqa: E402

__all__ = ["config", "releases", "render"]  # re-exported: infra/ is not an installed package

STACKS = ["dev", "staging", "prod"]
RENDERED = REPO_ROOT / "infra" / "rendered"


class Program:
    def __init__(self, resources: list[render.Recorded]):
        self.resources = resources
        self.by_urn = {r.urn: r for r in resources}

    def of_kind(self, kind: str) -> list[dict]:
        return [r.manifest for r in self.resources if r.manifest and r.manifest["kind"] == kind]

    def one(self, kind: str, name: str) -> dict:
        found = [m for m in self.of_kind(kind) if m["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def recorded(self, kind: str, name: str) -> render.Recorded:
        return next(r for r in self.resources
                    if r.manifest and r.manifest["kind"] == kind and r.manifest["metadata"]["name"] == name)

    def type_of(self, urn: str) -> str:
        return self.by_urn[urn].type


@functools.cache
def program(stack: str) -> Program:
    return Program(render.run(stack))


@functools.cache
def rendered(stack: str) -> dict[str, str]:
    """File name → text, as `eolake render` writes it."""
    return {name: render.dump(doc) for name, doc in render.documents(program(stack).resources).items()}


def write_stack(directory: Path, name: str, edit) -> Path:
    """A copy of a real stack with `edit(platform_dict)` applied, as a stack file in `directory`."""
    import yaml

    document = yaml.safe_load((REPO_ROOT / "stacks" / f"Pulumi.{name}.yaml").read_text())
    edit(document["config"]["eolake:platform"])
    path = directory / f"Pulumi.{name}-edited.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
