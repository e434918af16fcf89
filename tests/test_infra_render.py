"""`eolake render`: deterministic, checked in, valid against the Kubernetes schemas, and clean under checkov."""

from __future__ import annotations

import json
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml
from infra_program import RENDERED, STACKS, render, rendered, rendered_files

from eolake.cli import main

# The Kubernetes versions we support; the schemas ship with kubernetes-validate.
VERSIONS = ["1.35.0", "1.36.0", "1.37.0"]  # the minors the Kubernetes project supports (late 2026)
# Custom resources have no schema in kubernetes-validate: their envelope here, their content against the operators'
# API models in test_infra_crds.py.
CUSTOM_GROUPS = ("postgresql.cnpg.io/", "monitoring.coreos.com/", "gateway.networking.k8s.io/")


def test_supported_kubernetes_versions_are_the_ones_validated():
    """The schemas of every version we claim ship with the installed kubernetes-validate (no silent fallback),
    and none of them is a minor the Kubernetes project no longer supports (1.33 was the oldest in late 2026)."""
    from kubernetes_validate.utils import all_versions

    assert set(VERSIONS) <= set(all_versions())
    assert min(tuple(map(int, v.split(".")[:2])) for v in VERSIONS) >= (1, 33)
    newest = max(VERSIONS, key=lambda v: tuple(map(int, v.split("."))))
    assert newest == kubernetes_validate.latest_version(), (
        "a newer Kubernetes is out: add it to VERSIONS (and drop the minor that went out of support)"
    )


def test_render_is_deterministic(tmp_path):
    first = {p.name: p.read_bytes() for p in render.render("staging", tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in render.render("staging", tmp_path / "b")}
    assert first == second and len(first) > 20


@pytest.mark.parametrize("stack", STACKS)
def test_checked_in_render_is_current(stack):
    checked_in = {
        str(p.relative_to(RENDERED / stack)): p.read_text() for p in sorted((RENDERED / stack).rglob("*.yaml"))
    }
    fix = f"run `eolake render --stack {stack} --out infra/rendered/{stack}` and commit the result"
    assert sorted(checked_in) == sorted(rendered_files(stack)), f"the rendered file set changed: {fix}"
    stale = [name for name, text in rendered_files(stack).items() if checked_in[name] != text]
    assert not stale, f"infra/rendered/{stack} is out of date ({', '.join(stale)}): {fix}"


def manifests(stack: str) -> list[tuple[str, dict]]:
    return [(name, yaml.safe_load(text)) for name, text in rendered(stack).items() if not name.startswith("helm/")]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("stack", STACKS)
def test_manifests_validate_against_kubernetes_schemas(stack, version):
    checked = 0
    for name, document in manifests(stack):
        if document["apiVersion"].startswith(CUSTOM_GROUPS):
            assert document["kind"] and document["metadata"]["name"] and document["metadata"]["namespace"], name
            assert isinstance(document["spec"], dict), name
            continue
        kubernetes_validate.validate(document, version, strict=True)
        checked += 1
    assert checked >= 15


def test_checkov_finds_nothing_unexplained(tmp_path):
    for stack in STACKS:
        for name, text in rendered(stack).items():
            if not name.startswith("helm/"):  # Helm release inputs are not manifests
                (tmp_path / f"{stack}-{name}").write_text(text)
    answer = subprocess.run(
        [
            sys.executable,
            "-m",
            "checkov.main",
            "-d",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--quiet",
            "--compact",
            "-o",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(answer.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert not failed, f"checkov failures (fix them, or skip with a reason in pods.CHECKOV_SKIPS): {failed}"
    assert report["summary"]["passed"] > 100
    for skipped in report["results"].get("skipped_checks", []):
        assert len(skipped.get("suppress_comment") or "") > 20, skipped["check_id"]


def test_cli_render(tmp_path, capsys):
    assert main(["render", "--stack", "dev", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "deployment-eolake-catalog.yaml").is_file()
    assert "manifests in" in capsys.readouterr().out
