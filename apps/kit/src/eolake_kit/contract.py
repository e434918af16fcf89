"""The OpenAPI document tells the truth: the errors a route really answers, as problem+json, and who may call it.

Applied once to every service's document: the distribution's version; FastAPI's 422 goes (the kit answers invalid
requests with 400); each operation lists the problem+json errors it can answer (400-431, 503, 504) as they apply;
routes behind a role carry the security schemes and the role (`x-eolake-role`), and non-GET routes open to anyone on
purpose carry the reason their manifest gives (`x-eolake-public`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import _get_api_route_for_openapi

from eolake_kit import replicas
from eolake_kit.auth import principal
from eolake_kit.problems import MEDIA_TYPE
from eolake_kit.settings import ServiceSettings
from eolake_kit.version import __version__
from eolake_spec import manifests

READS = {"GET", "HEAD", "OPTIONS"}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
PATH_PARAMETER = re.compile(r"{([^}:]+)}")
OPERATIONAL = {"/healthz", "/metrics"}  # answer without touching anything: only what they say
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["type", "title", "status"],
}
REASONS = {
    "400": "the request is invalid (a parameter, the body, or a bound it exceeds)",
    "401": "no credentials, or credentials that are not valid",
    "403": "the caller lacks the role this route needs",
    "404": "nothing found at this path",
    "408": "the request body arrived too slowly",
    "413": "the request body is too large",
    "414": "the path or the query string is longer than its bound",
    "415": "the request body is not JSON",
    "429": "the caller sent more requests than this route's rate limit allows; retry after Retry-After seconds",
    "431": "too many request headers, or too large",
    "503": "a dependency is unavailable; retry later",
    "504": "the request took longer than its time budget",
}


def install_contract(
    app: FastAPI, settings: ServiceSettings, responses: dict[str, dict[int, str]] | None = None
) -> None:
    """`responses`: what routes of a service answer besides the kit's errors, as {"POST /path": {409: "why"}}."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if getattr(app.state, "contract_applied", False) and app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        apply_contract(schema, app, settings, responses or {})
        app.state.contract_applied = True
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise it


def apply_contract(
    schema: dict[str, Any], app: FastAPI, settings: ServiceSettings, extra: dict[str, dict[int, str]]
) -> None:
    schema.setdefault("info", {})["version"] = __version__  # the distribution's, whatever the app was given
    guards = dict(_guards(app))
    own = manifests().get(settings.service_name)
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components["securitySchemes"] = _security_schemes(settings)
    schemes: list[dict[str, list[str]]] = [{name: []} for name in components["securitySchemes"]]
    limited = re.compile("|".join(f"(?:{p})" for p in settings.rate_limited_routes()) or r"(?!)")
    for path, item in schema.get("paths", {}).items():
        for lower, operation in item.items():
            method = lower.upper()
            if method not in READS | WRITES:
                continue
            checks, role = guards.get((path, method), (False, None))
            _declare_path_parameters(path, operation)
            own_codes = dict(extra.get(f"{method} {path}", {}))
            if limited.match(f"{method} {path}"):
                own_codes.setdefault(429, REASONS["429"])
            _document_errors(path, operation, checks, role, own_codes)
            if role:
                operation["security"] = schemes
                operation["x-eolake-role"] = role
            elif method in WRITES and own and (public := own.public_route(method, path)):
                operation["x-eolake-public"] = public.reason
            if own and own.replica_reads and path not in replicas.PROBES:
                _document_read_after(operation, writes=role is not None and method in WRITES)
    for unused in ("HTTPValidationError", "ValidationError"):  # only FastAPI's 422 referred to them
        components["schemas"].pop(unused, None)


def _document_errors(
    path: str, operation: dict[str, Any], checks: bool, role: str | None, extra: dict[int, str]
) -> None:
    """The kit's errors and the route's own, each a problem; FastAPI's 422 goes (invalid requests are 400s)."""
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    for code in _error_codes(path, operation, checks, role):
        responses.setdefault(code, {"description": REASONS[code]})
    for status, description in extra.items():
        responses.setdefault(str(status), {"description": description})
    for key, response in responses.items():
        if key.isdigit() and int(key) >= 400:
            response["content"] = {MEDIA_TYPE: {"schema": PROBLEM_REF}}


def _document_read_after(operation: dict[str, Any], writes: bool) -> None:
    """eolake_kit.replicas: a write answers the primary's position; any request may send it back."""
    operation.setdefault("parameters", []).append(
        {
            "name": replicas.HEADER,
            "in": "header",
            "required": False,
            "description": "a WAL position a write answered (its cookie does the same): this read sees that write",
            "schema": {"type": "string", "pattern": replicas.LSN.pattern, "example": "0/16B3748"},
        }
    )
    # A malformed position is refused wherever it is read: every route but the probes (eolake_kit.replicas).
    operation["responses"].setdefault(
        "400", {"description": REASONS["400"], "content": {MEDIA_TYPE: {"schema": PROBLEM_REF}}}
    )
    if not writes:
        return
    for key, response in operation.get("responses", {}).items():
        if key.startswith("2"):
            response.setdefault("headers", {})[replicas.HEADER] = {
                "description": "the primary's WAL position after this write: send it back (or keep the cookie of "
                "the same name) and the next reads see the write, even from a replica that lags",
                "schema": {"type": "string"},
            }


def _declare_path_parameters(path: str, operation: dict[str, Any]) -> None:
    """Every {name} of the path template is a declared parameter (stac-fastapi leaves some out)."""
    declared = {p.get("name") for p in operation.get("parameters", []) if p.get("in") == "path"}
    for name in PATH_PARAMETER.findall(path):
        if name not in declared:
            operation.setdefault("parameters", []).append(
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            )


def _error_codes(path: str, operation: dict[str, Any], checks_credentials: bool, role: str | None) -> list[str]:
    if path in OPERATIONAL:
        return []
    codes = ["414", "431", "503", "504"]  # the kit's bounds, whatever the route
    parameters = operation.get("parameters") or []
    if parameters or "requestBody" in operation:
        codes.append("400")
    if any(p.get("in") == "path" for p in parameters):
        codes.append("404")
    if "requestBody" in operation:
        codes += ["408", "413", "415"]
    if checks_credentials or role:
        codes.append("401")
    if role:
        codes.append("403")
    return sorted(codes)


def api_routes(app: FastAPI) -> Iterator[routing._APIRouteLike]:
    """Every API route as it is served (FastAPI's own view of it when it writes the OpenAPI document): full path,
    router dependencies included."""
    for context in routing.iter_route_contexts(app.routes):
        route = _get_api_route_for_openapi(context)
        if route is not None:
            yield route


def _guards(app: FastAPI) -> Iterator[tuple[tuple[str, str], tuple[bool, str | None]]]:
    """(path, method) → (whether the route reads credentials, the role it requires or None)."""
    for route in api_routes(app):
        calls = list(_calls(route.dependant))
        role = next((c.eolake_role for c in calls if hasattr(c, "eolake_role")), None)
        checks = role is not None or principal in calls
        for method in route.methods or ():
            yield (route.path_format, method), (checks, role)


def _calls(dependant: Dependant) -> Iterator[object]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def _security_schemes(settings: ServiceSettings) -> dict[str, dict[str, str]]:
    schemes: dict[str, dict[str, str]] = {
        "apiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "a service-account key (eolake_kit.auth API keys)",
        },
    }
    if settings.auth.oidc_issuer:
        schemes["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "an access token of the OIDC provider",
        }
        schemes["oidc"] = {
            "type": "openIdConnect",
            "openIdConnectUrl": settings.auth.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
        }
    return schemes
