"""The thesaurus: a Skosmos-compatible REST subset, autocomplete and query expansion over the SKOS index.

Settings (settings.py) → dependencies (dependencies.py, swappable with dependency overrides) → the core
(query.Thesaurus, no framework in it) → routers (routes.py)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from eolake_kit import __version__, install_kit
from eolake_thesaurus.query import Thesaurus
from eolake_thesaurus.routes import rest, service
from eolake_thesaurus.settings import ThesaurusSettings


def create_app(settings: ThesaurusSettings | None = None) -> FastAPI:
    settings = settings or ThesaurusSettings()
    app = FastAPI(
        title="eolake thesaurus",
        version=__version__,
        description="SKOS vocabularies (GEMET: European Environment Agency; INSPIRE themes: European "
        "Commission) with a Skosmos-compatible REST API",
    )
    app.state.settings = settings
    thesaurus = app.state.thesaurus = Thesaurus(settings.index_path)
    app.include_router(service)
    app.include_router(rest)

    async def index() -> None:
        if not settings.index_path.exists():
            raise RuntimeError(f"no thesaurus index at {settings.index_path}")
        await run_in_threadpool(thesaurus.vocabularies)

    return install_kit(app, settings, checks={"index": index})
