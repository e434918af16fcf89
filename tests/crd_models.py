"""Custom resources checked against the models of the operators' APIs, published on npm by kubernetes-models
(@kubernetes-models/cloudnative-pg, /prometheus-operator, /gateway-api; pinned in tests/crds/package-lock.json).

Two checks per document, both from the same published package:
- values: the package's validator (ajv, compiled from the API's OpenAPI schema: types, enums, patterns, required);
- unknown fields: the package's TypeScript declarations, through `tsc` (an object literal may only name known
  properties; maps and free-form fields are typed as such, so they stay open). The API server would drop such a
  field silently (pruning); here it fails.

The packages are installed once (`npm ci`) into a cache keyed by the lockfile, so a run needs npm and the registry
only the first time."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).parent / "crds"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "eolake" / "crd-models"
# apiVersion group → the package that models it.
PACKAGES = {
    "postgresql.cnpg.io": "@kubernetes-models/cloudnative-pg",
    "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
    "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
}


class ModelsUnavailable(RuntimeError):
    pass


def installed() -> Path:
    """The directory holding node_modules for the pinned lockfile (installed on first use)."""
    lock = (HERE / "package-lock.json").read_bytes()
    root = CACHE / hashlib.sha256(lock + (HERE / "package.json").read_bytes()).hexdigest()[:16]
    if (root / "node_modules" / ".package-lock.json").is_file():
        return root
    if not shutil.which("npm") or not shutil.which("node"):
        raise ModelsUnavailable("the CRD model check needs node and npm (apt-get install nodejs npm)")
    staging = root.with_suffix(".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(HERE / name, staging / name)
    answer = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=staging,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if answer.returncode != 0:
        raise ModelsUnavailable(f"npm ci failed: {answer.stderr[-2000:]}")
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)  # whole or not at all
    return root


def module(document: dict) -> tuple[str, str]:
    group, _, version = document["apiVersion"].rpartition("/")
    if group not in PACKAGES:
        raise KeyError(f"no model package for {document['apiVersion']}")
    return f"{PACKAGES[group]}/{group}/{version}/{document['kind']}", document["kind"]


def problems(documents: list[dict]) -> dict[int, list[str]]:
    """What is wrong with the documents, by index in `documents`; empty when all are valid. One run of node and
    one of tsc for the whole list."""
    root = installed()
    found: dict[int, list[str]] = {}
    for index, message in [*_values(root, documents), *_fields(root, documents)]:
        found.setdefault(index, []).append(message)
    return found


def _values(root: Path, documents: list[dict]) -> list[tuple[int, str]]:
    items = [{"module": module(d)[0], "kind": module(d)[1], "document": d} for d in documents]
    batch = root / "documents.json"
    batch.write_text(json.dumps(items))
    shutil.copy(HERE / "validate.mjs", root / "validate.mjs")  # ES modules resolve packages from their own place
    answer = subprocess.run(["node", "validate.mjs", batch.name], cwd=root, capture_output=True, text=True, timeout=300)
    if answer.returncode != 0:
        raise RuntimeError(f"validate.mjs failed: {answer.stderr[-2000:]}")
    return [tuple(p) for p in json.loads(answer.stdout)]


def _fields(root: Path, documents: list[dict]) -> list[tuple[int, str]]:
    """One line per document, so that tsc's line numbers name the document."""
    lines = []
    for i, d in enumerate(documents):
        path, kind = module(d)
        lines.append(f'import type {{ I{kind} as T{i} }} from "{path}";')
    header = len(lines)
    lines += [f"export const d{i}: T{i} = {json.dumps(d)};" for i, d in enumerate(documents)]
    source = root / "documents.ts"
    source.write_text("\n".join(lines) + "\n")
    answer = subprocess.run(
        [
            str(root / "node_modules" / ".bin" / "tsc"),
            "--noEmit",
            "--strict",
            "--skipLibCheck",
            "--module",
            "nodenext",
            "--moduleResolution",
            "nodenext",
            "--target",
            "es2022",
            source.name,
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = re.findall(r"^documents\.ts\((\d+),\d+\): error TS\d+: (.*)$", answer.stdout, re.M)
    if answer.returncode != 0 and not errors:
        raise RuntimeError(f"tsc failed: {answer.stdout[-2000:]}{answer.stderr[-2000:]}")
    found = []
    for line, message in errors:
        index = int(line) - 1 - header
        if index < 0:
            raise RuntimeError(f"tsc: {message}")  # an import that does not resolve: a kind the package lacks
        found.append((index, message))
    return found
