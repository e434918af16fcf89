"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from eolake_kit.docs import api_links
from eolake_kit.observe import metrics_response
from eolake_kit.problems import problem
from eolake_kit.version import __version__

Check = Callable[[], Awaitable[object]]
router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers (never touches a dependency); its version")
async def healthz(request: Request) -> dict[str, str]:
    return {"status": "alive", **running_version()}


@lru_cache
def running_version() -> dict[str, str]:
    """The distribution's version and the platform's release label (EOLAKE_RELEASE, set by the deployment): what a
    rolling upgrade changes, visible to whoever watches it."""
    return {"version": __version__, "release": os.environ.get("EOLAKE_RELEASE") or __version__}


@router.get(
    "/readyz",
    summary="Readiness: every dependency answers",
    responses={503: {"description": "a dependency is down", "content": {"application/problem+json": {}}}},
)
async def readyz(request: Request) -> Response:
    checks: dict[str, Check] = request.app.state.readiness_checks
    timeout: float = request.app.state.kit_settings.readiness_timeout
    results = await asyncio.gather(*(_run(check, timeout) for check in checks.values()))
    report = dict(zip(checks, results))
    # Where the service describes itself (OpenAPI, documentation, conformance): the services catalog of the web
    # view reads them with the status, in one request.
    root = request.scope.get("root_path", "").rstrip("/")
    links = [{**link, "href": root + link["href"]} for link in api_links(request.app)]
    if all(r["status"] == "up" for r in report.values()):
        return JSONResponse({"status": "ready", "checks": report, "links": links})
    down = ", ".join(name for name, r in report.items() if r["status"] != "up")
    return problem(503, f"not ready: {down} unavailable", checks=report, links=links)


async def _run(check: Check, timeout: float) -> dict[str, object]:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout)
    except TimeoutError:
        return {"status": "down", "error": f"no answer within {timeout:g} s"}
    except Exception as exc:  # a readiness check reports any failure, it never raises
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"status": "up", "ms": round((time.perf_counter() - start) * 1000, 1)}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return metrics_response()
