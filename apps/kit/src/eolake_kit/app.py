"""Put the kit on a FastAPI app: public URL pinning, observation, request bounds, problem+json, health routes, auth,
analytics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from eolake_kit.auth import Authenticator
from eolake_kit.bodies import JsonBodyMiddleware
from eolake_kit.bounds import BoundsMiddleware, install_database_handlers
from eolake_kit.contract import install_contract
from eolake_kit.docs import install_offline_docs
from eolake_kit.headers import install_headers
from eolake_kit.health import Check
from eolake_kit.health import router as health_router
from eolake_kit.logs import count_log_messages
from eolake_kit.matomo import MatomoTracker
from eolake_kit.observe import ObserveMiddleware
from eolake_kit.problems import install_problem_handlers
from eolake_kit.publicurl import PublicUrlMiddleware
from eolake_kit.ratelimit import QuotaExceeded, RateLimitMiddleware, TrustedProxies, quota_problem
from eolake_kit.replicas import DEFAULT_MAX_LAG, ReadAfterMiddleware
from eolake_kit.settings import ServiceSettings
from eolake_kit.tracing import configure_tracing
from eolake_spec.manifest import ServiceManifest, manifests


def install_kit(
    app: FastAPI,
    settings: ServiceSettings,
    *,
    checks: dict[str, Check] | None = None,
    status_codes: dict[type[Exception], int] | None = None,
    responses: dict[str, dict[int, str]] | None = None,
) -> FastAPI:
    """`responses`: statuses routes answer besides the kit's own errors ({"POST /path": {409: "why"}}), for the
    OpenAPI document."""
    configure_tracing(settings.service_name, settings.otlp_endpoint, settings.trace_sample_ratio)
    _one_server_span(app)
    count_log_messages(settings.service_name)
    app.state.kit_settings = settings
    app.state.readiness_checks = checks or {}
    app.state.authenticator = Authenticator(settings.auth)
    tracker = app.state.matomo = MatomoTracker(settings) if settings.matomo_enabled else None
    if tracker is not None:
        _stop_on_shutdown(app, tracker)
    install_problem_handlers(app, status_codes)
    if settings.manifest is None or settings.manifest.database:  # the others import no driver (a tenth of a second)
        install_database_handlers(app, settings.limits)
    app.add_exception_handler(QuotaExceeded, lambda request, exc: quota_problem(exc))
    install_offline_docs(app, settings.auth.oidc_issuer)
    app.include_router(health_router)
    # The probes first: FastAPI builds an included router's routes on the first request that reaches them, so a probe
    # that went past the service's own built them all at start (a third of a CPU-second in tiles); they are built at
    # their own first request instead.
    app.router.routes.insert(0, app.router.routes.pop())
    install_contract(app, settings, responses)
    app.add_middleware(  # the read-after token (eolake_kit.replicas), inside whatever a service added itself
        ReadAfterMiddleware,
        https=settings.public_url.scheme == "https",
        max_lag=getattr(settings, "max_replica_lag_seconds", DEFAULT_MAX_LAG),
    )
    app.add_middleware(JsonBodyMiddleware, api=app)  # innermost: bodies reach it already bounded
    _limit_rates(app, settings)
    app.add_middleware(BoundsMiddleware, limits=settings.limits)  # inside: its refusals are observed and logged
    app.add_middleware(
        ObserveMiddleware, service=settings.service_name, on_finished=tracker.track if tracker is not None else None
    )
    install_headers(app, https=settings.public_url.scheme == "https", cors_origins=settings.cors_origins)
    app.add_middleware(PublicUrlMiddleware, public_url=str(settings.public_url), root_path=settings.root_path)
    return app


def _limit_rates(app: FastAPI, settings: ServiceSettings) -> None:
    """Token buckets on the expensive routes (the manifest's, unless settings name them), inside the observation
    (429s are counted) and the public URL pinning (which hands over the forwarded addresses)."""
    routes = settings.rate_limited_routes()
    if not routes:
        return
    known = manifests().get(settings.service_name)
    default_rate, default_burst = (known or ServiceManifest).rate_limit
    limits = settings.rate_limit
    app.add_middleware(
        RateLimitMiddleware,
        routes=routes,
        rate=limits.requests_per_second or default_rate,
        burst=limits.burst or default_burst,
        root_path=settings.root_path,
        proxies=TrustedProxies(settings.trusted_proxies),
        authenticator=app.state.authenticator,
    )


def _one_server_span(app: FastAPI) -> None:
    """The kit's span (request id, route template, status class) is a request's only SERVER span.

    Recent FastAPI versions start a SERVER span of their own for every request once a tracer provider is set: a
    childless sibling of the kit's span under the same parent. Its tracing is turned off here; FastAPI keeps the
    same config dict in its runtime, so this takes effect, and the trace test fails should that ever change.
    """
    telemetry = getattr(app, "_telemetry", None)
    if isinstance(telemetry, dict):
        telemetry["tracing"] = False


def _stop_on_shutdown(app: FastAPI, tracker: MatomoTracker) -> None:
    """Start the tracker with the app and flush it (bounded by its timeout) after the app's own shutdown."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        tracker.start()
        try:
            async with inner(a) as state:
                yield state
        finally:
            await tracker.aclose()

    app.router.lifespan_context = lifespan
