"""Every write needs a role: each non-GET route of every service, read from the OpenAPI document the service serves
on the running embedded platform, refuses anonymous callers (401) and lets the documented role through. A non-GET
route open to anyone must be declared so in the service's manifest (`public_routes`), with its reason."""

from __future__ import annotations

import uuid

import httpx
import pytest

from eolake_spec import manifests
from servers import RunningPlatform as Platform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
READS = {"get", "head", "options", "trace"}
ABSENT = str(uuid.UUID(int=1))  # a path id nothing carries: a write that passes auth finds nothing to change
ROLES = ("user", "admin")


@pytest.fixture(scope="module")
def writes(scratch_platform: Platform) -> list[dict]:
    """Every non-GET operation of every service with an OpenAPI document, as the service describes it."""
    found = []
    with httpx.Client(timeout=30) as client:
        for name, m in manifests().items():
            if m.openapi is None:
                continue
            base = scratch_platform.base_url + m.path.rstrip("/")
            doc = client.get(base + m.openapi)
            assert doc.status_code == 200, f"{name} serves no OpenAPI at {m.path}{m.openapi}"
            for path, item in doc.json()["paths"].items():
                for method, operation in item.items():
                    if method not in READS:
                        found.append(
                            {
                                "service": name,
                                "base": base,
                                "path": path,
                                "method": method.upper(),
                                "operation": operation,
                            }
                        )
    return found


def _url(write: dict) -> str:
    path = write["path"]
    for parameter in write["operation"].get("parameters", []):
        if parameter["in"] == "path":
            enum = parameter.get("schema", {}).get("enum")
            path = path.replace("{" + parameter["name"] + "}", enum[0] if enum else ABSENT)
    return write["base"] + path


def _send(client: httpx.Client, write: dict, key: str | None = None) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return client.request(write["method"], _url(write), json={}, headers=headers)


def test_the_inventory_covers_every_service_with_writes(writes):
    services = {w["service"] for w in writes}
    assert {"catalog", "downloads", "tiles", "search"} <= services, services
    assert len(writes) >= 20, [f"{w['method']} {w['path']}" for w in writes]


def test_every_write_has_a_role_or_a_declared_reason(writes):
    undeclared = [
        f"{w['service']}: {w['method']} {w['path']}"
        for w in writes
        if not w["operation"].get("x-eolake-role") and not w["operation"].get("x-eolake-public")
    ]
    assert not undeclared, "non-GET routes open to anyone without a reason in the manifest: " + ", ".join(undeclared)
    for w in writes:
        if w["operation"].get("x-eolake-role"):
            assert w["operation"]["security"], f"{w['method']} {w['path']} documents no security scheme"
            assert {"401", "403"} <= w["operation"]["responses"].keys()


def test_anonymous_writes_are_refused(scratch_platform, writes):
    with httpx.Client(timeout=60) as client:
        for w in writes:
            if not w["operation"].get("x-eolake-role"):
                continue
            response = _send(client, w)
            assert response.status_code == 401, f"{w['method']} {w['path']}: {response.status_code} {response.text}"
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_documented_role_is_let_through_and_a_lower_one_is_not(scratch_platform, writes):
    keys = {role: scratch_platform.key(role) for role in ROLES}
    with httpx.Client(timeout=60) as client:
        for w in writes:
            role = w["operation"].get("x-eolake-role")
            if not role:
                continue
            allowed = _send(client, w, keys[role])
            assert allowed.status_code not in (401, 403), (
                f"{w['method']} {w['path']} with role {role}: {allowed.status_code} {allowed.text}"
            )
            assert allowed.status_code < 500, f"{w['method']} {w['path']}: {allowed.status_code} {allowed.text}"
            lower = ROLES[: ROLES.index(role)]
            for weaker in lower:
                refused = _send(client, w, keys[weaker])
                assert refused.status_code == 403, f"{w['method']} {w['path']} with role {weaker}: {refused.text}"


def test_public_writes_do_not_ask_for_credentials(scratch_platform, writes):
    with httpx.Client(timeout=60) as client:
        for w in writes:
            if w["operation"].get("x-eolake-public") and "{" not in w["path"]:
                response = _send(client, w)
                assert response.status_code not in (401, 403), f"{w['method']} {w['path']}: {response.text}"
