"""Run a service with uvicorn: JSON logs, graceful shutdown, multi-process metrics when there are workers."""

from __future__ import annotations

import os
import tempfile

import uvicorn

from eolake_kit.logs import configure_logging
from eolake_kit.settings import ServiceSettings


def serve(factory: str, settings: ServiceSettings) -> None:
    """`factory` is the import path of the service's `create_app`, called in each worker process."""
    configure_logging(settings.service_name, settings.log_level)
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"eolake-{settings.service_name}-metrics-")
    uvicorn.run(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=settings.graceful_timeout,
        lifespan="on",
    )
