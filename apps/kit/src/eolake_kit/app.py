"""Put the kit on a FastAPI app: public URL pinning, observation, problem+json, health routes, auth."""

from __future__ import annotations

from fastapi import FastAPI

from eolake_kit.auth import Authenticator
from eolake_kit.health import Check
from eolake_kit.health import router as health_router
from eolake_kit.observe import ObserveMiddleware
from eolake_kit.problems import install_problem_handlers
from eolake_kit.publicurl import PublicUrlMiddleware
from eolake_kit.settings import ServiceSettings
from eolake_kit.tracing import configure_tracing


def install_kit(app: FastAPI, settings: ServiceSettings, *, checks: dict[str, Check] | None = None,
                status_codes: dict[type[Exception], int] | None = None) -> FastAPI:
    configure_tracing(settings.service_name, settings.otlp_endpoint)
    app.state.kit_settings = settings
    app.state.readiness_checks = checks or {}
    app.state.authenticator = Authenticator(settings.auth)
    install_problem_handlers(app, status_codes)
    app.include_router(health_router)
    app.add_middleware(ObserveMiddleware, service=settings.service_name)
    app.add_middleware(PublicUrlMiddleware, public_url=str(settings.public_url), root_path=settings.root_path)
    return app
