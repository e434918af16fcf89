"""Moving every prefix in a stack moves every caller: the peers each service is given (embedded and Kubernetes), the
web view's links, the ingress. Nothing anywhere still says /stac once the catalog lives at /x-catalog."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx
import pytest
from infra_program import Program, own_gateway, render, write_stack
from test_acceptance import RUNNER

from eolake_spec import load_stack, manifests
from servers import embedded_platform


def moved(platform: dict) -> None:
    for name, manifest in manifests().items():
        if manifest.path != "/":
            platform["services"].setdefault(name, {})["path"] = f"/x-{name}"


def test_embedded_peers_follow_moved_prefixes(tmp_path):
    platform = load_stack(write_stack(tmp_path, "dev", moved))
    origins = {name: f"http://127.0.0.1:{9000 + i}" for i, name in enumerate(platform.enabled_services)}
    for name in platform.enabled_services:
        env = platform.service_env(name, origins)
        peers = json.loads(env.get(f"EOLAKE_{name.upper()}_PEERS", "{}"))
        assert sorted(peers) == sorted(manifests()[name].calls)
        for callee, peer in peers.items():
            assert peer["url"] == f"{origins[callee]}/x-{callee}"
            assert peer["public_url"] == f"https://eolake.dev.example.org/x-{callee}"
        assert env[f"EOLAKE_{name.upper()}_ROOT_PATH"] == ("" if name == "web" else f"/x-{name}")
    links = json.loads(platform.service_env("web")["EOLAKE_WEB_SERVICES"])
    assert links == {name: f"/x-{name}" for name in platform.enabled_services if name != "web"}


def test_kubernetes_render_follows_moved_prefixes(tmp_path):
    stack = write_stack(tmp_path, "prod", moved)
    program = Program(str(stack), render.run(stack))
    search = json.loads(program.one("ConfigMap", "search-config")["data"]["EOLAKE_SEARCH_PEERS"])
    assert search["catalog"]["url"] == "http://catalog.eolake.svc.cluster.local:8081/x-catalog"
    assert search["thesaurus"]["url"] == "http://thesaurus.eolake.svc.cluster.local:8085/x-thesaurus"
    paths = {
        p["path"]: p["backend"]["service"]["name"]
        for p in program.one("Ingress", "eolake")["spec"]["rules"][0]["http"]["paths"]
    }
    assert paths == {**{f"/x-{n}": n for n in program.context.services if n != "web"}, "/": "web"}
    for config_map in program.of_kind("ConfigMap"):
        if config_map["metadata"]["name"].endswith("-config"):
            assert '/stac"' not in json.dumps(config_map["data"]), config_map["metadata"]["name"]


def test_gateway_route_follows_moved_prefixes(tmp_path):
    def moved_behind_gateway(platform: dict) -> None:
        moved(platform)
        own_gateway(platform)

    stack = write_stack(tmp_path, "prod", moved_behind_gateway)
    program = Program(str(stack), render.run(stack))
    paths = {
        rule["matches"][0]["path"]["value"]: rule["backendRefs"][0]["name"]
        for rule in program.one("HTTPRoute", "eolake")["spec"]["rules"]
    }
    assert paths == {**{f"/x-{n}": n for n in program.context.services if n != "web"}, "/": "web"}


def test_acceptance_defaults_are_the_standard_layout():
    """The suites' default prefixes (acceptance/resources/common.resource) are the manifests' paths."""
    from eolake.paths import REPO_ROOT

    resource = (REPO_ROOT / "acceptance" / "resources" / "common.resource").read_text()
    defaults = dict(re.findall(r"^\$\{([A-Z]+)_PREFIX\}\s+(\S+)$", resource, re.M))
    assert defaults == {name.upper(): m.path for name, m in manifests().items() if m.path != "/"}


def moved_locally(platform: dict) -> None:
    """Every prefix moved; the local stack's second search provider (the local catalog, by its public path)
    follows the catalog, as its operator would move it."""
    moved(platform)
    for provider in platform.get("providers", []):
        if provider.get("url") == "/stac":
            provider["url"] = "/x-catalog"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_embedded_platform_with_moved_prefixes_passes_the_acceptance_suites():
    """The relocated stack runs locally (real processes, the gateway at the new prefixes, peers following) and
    every acceptance suite passes against it, told the stack's prefixes."""
    with embedded_platform("eolake-relocated-", moved_locally) as running:
        assert httpx.get(f"{running.base_url}/stac/collections", timeout=10).status_code != 200  # moved away
        result = subprocess.run(
            [
                sys.executable,
                str(RUNNER),
                "--base-url",
                running.base_url,
                "--stack",
                str(running.stack),
                "--outputdir",
                str(running.root / "results"),
                "--admin-key-file",
                str(running.state / "admin.key"),
                "--user-key-file",
                str(running.state / "user.key"),
            ],
            env=running.env(),
            cwd=running.root,
            capture_output=True,
            text=True,
            timeout=400,
        )
        failed = [line for line in result.stdout.splitlines() if line.rstrip().endswith("| FAIL |")]
        assert result.returncode == 0, "\n".join(failed) + f"\n{result.stdout[-4000:]}\n{running.log_tail()}"
        totals = re.findall(r"^(\d+) tests?, (\d+) passed, (\d+) failed", result.stdout, re.M)[-1]
        assert int(totals[0]) >= 40 and totals[0] == totals[1], result.stdout[-2000:]
