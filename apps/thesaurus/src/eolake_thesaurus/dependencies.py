"""What the thesaurus's routes depend on, each swappable with FastAPI's dependency overrides: the settings, the
index (the framework-free core, query.Thesaurus) and the way its calls are run off the event loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from eolake_thesaurus.query import NotFound, Thesaurus
from eolake_thesaurus.settings import ThesaurusSettings


def get_settings(request: Request) -> ThesaurusSettings:
    return request.app.state.settings


def get_thesaurus(request: Request) -> Thesaurus:
    return request.app.state.thesaurus


Settings = Annotated[ThesaurusSettings, Depends(get_settings)]


class Index:
    """The core's calls as the routes make them: in a worker thread, an unknown vocabulary or concept a 404, a
    missing index a 503, a page larger than the settings allow a 400."""

    def __init__(self, thesaurus: Thesaurus, settings: ThesaurusSettings):
        self.thesaurus, self.settings = thesaurus, settings

    async def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self.settings.index_path.exists():
            raise HTTPException(503, "the thesaurus index has not been built yet: run `eolake thesaurus import`")
        try:
            return await run_in_threadpool(fn, *args, **kwargs)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc

    async def check_vocab(self, vocab: str | None) -> None:
        if vocab:
            await self(self.thesaurus.check_vocab, vocab)

    def limit(self, limit: int) -> int:
        if limit > self.settings.max_limit:
            raise HTTPException(400, f"limit must be at most {self.settings.max_limit}")
        return limit

    def depth(self, depth: int) -> int:
        if depth > self.settings.max_depth:
            raise HTTPException(400, f"depth must be at most {self.settings.max_depth}")
        return depth


def get_index(thesaurus: Annotated[Thesaurus, Depends(get_thesaurus)], settings: Settings) -> Index:
    return Index(thesaurus, settings)


IndexCalls = Annotated[Index, Depends(get_index)]
