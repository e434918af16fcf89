"""The thesaurus: a Skosmos-compatible REST subset, autocomplete and query expansion over the SKOS index."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.concurrency import run_in_threadpool

from eolake_kit import install_kit
from eolake_thesaurus.query import NotFound, Thesaurus
from eolake_thesaurus.settings import ThesaurusSettings

CONTEXT = {"skos": "http://www.w3.org/2004/02/skos/core#", "uri": "@id", "type": "@type"}
Lang = Annotated[str | None, Query(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]+)*$", description="language code")]
MAX_BATCH = 64  # texts in one /expand/batch request (a query's words and their forms)
Languages = Annotated[str | None, Query(pattern=r"^[A-Za-z]{2,3}(,[A-Za-z]{2,3})*$",
                                         description="comma-separated: only labels in these languages (and those "
                                                     "without one)")]
Uri = Annotated[str, Query(min_length=1, max_length=2000)]
UNKNOWN_VOCABULARY = {404: {"description": "the vocabulary named in `vocab` does not exist"}}


def create_app(settings: ThesaurusSettings | None = None) -> FastAPI:
    settings = settings or ThesaurusSettings()
    app = FastAPI(title="eolake thesaurus", version="0.1.0",
                  description="SKOS vocabularies (GEMET: European Environment Agency; INSPIRE themes: European "
                              "Commission) with a Skosmos-compatible REST API")
    thesaurus = Thesaurus(settings.index_path)
    app.state.thesaurus = thesaurus
    rest = APIRouter(prefix="/rest/v1")

    async def call(fn, *args, **kwargs):
        if not settings.index_path.exists():
            raise HTTPException(503, "the thesaurus index has not been built yet: run `eolake thesaurus import`")
        try:
            return await run_in_threadpool(fn, *args, **kwargs)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc

    def limit_param(limit: int) -> int:
        if limit > settings.max_limit:
            raise HTTPException(400, f"limit must be at most {settings.max_limit}")
        return limit

    @app.get("/", summary="landing page")
    async def landing():
        return {"title": "eolake thesaurus", "links": [
            {"rel": "vocabularies", "href": f"{settings.service_url}/rest/v1/vocabularies"},
            {"rel": "search", "href": f"{settings.service_url}/rest/v1/search?query=flood*"},
            {"rel": "autocomplete", "href": f"{settings.service_url}/autocomplete?q=flo"},
            {"rel": "expand", "href": f"{settings.service_url}/expand?q=inondation"},
            {"rel": "service-doc", "href": f"{settings.service_url}/docs"}]}

    @rest.get("/vocabularies")
    async def vocabularies(lang: Lang = None):
        return {"@context": CONTEXT, "uri": "", "vocabularies": await call(thesaurus.vocabularies)}

    @rest.get("/search", responses=UNKNOWN_VOCABULARY)
    async def search(query: Annotated[str, Query(min_length=1, max_length=200)], lang: Lang = None,
                     vocab: str | None = None, maxhits: Annotated[int, Query(ge=1)] = 50,
                     offset: Annotated[int, Query(ge=0)] = 0):
        vocabs = vocab.split() if vocab else [None]
        for v in vocabs:
            if v:
                await call(thesaurus.check_vocab, v)
        results = []
        for v in vocabs:
            results += await call(thesaurus.search, query, lang, v, limit_param(maxhits), offset)
        return {"@context": CONTEXT, "uri": "", "results": results[:maxhits]}

    @rest.get("/{vocid}/")
    async def vocabulary(vocid: str):
        return await call(thesaurus.vocabulary, vocid)

    @rest.get("/{vocid}/search")
    async def vocab_search(vocid: str, query: Annotated[str, Query(min_length=1, max_length=200)],
                           lang: Lang = None, maxhits: Annotated[int, Query(ge=1)] = 50,
                           offset: Annotated[int, Query(ge=0)] = 0):
        await call(thesaurus.check_vocab, vocid)
        return {"@context": CONTEXT, "uri": "",
                "results": await call(thesaurus.search, query, lang, vocid, limit_param(maxhits), offset)}

    @rest.get("/{vocid}/data")
    async def data(vocid: str, uri: Uri, lang: Lang = None):
        return {"@context": CONTEXT, **await call(thesaurus.concept, vocid, uri, lang)}

    @rest.get("/{vocid}/label")
    async def label(vocid: str, uri: Uri, lang: Lang = None):
        await call(thesaurus.check_concept, vocid, uri)
        labels = await call(thesaurus.labels, vocid, uri)
        return {"@context": CONTEXT, "uri": uri, "prefLabel": await call(thesaurus.pref_label, vocid, uri, lang),
                "prefLabels": labels["prefLabel"],
                "altLabel": labels["altLabel"], "hiddenLabel": labels["hiddenLabel"]}

    @rest.get("/{vocid}/lookup")
    async def lookup(vocid: str, label: Annotated[str, Query(min_length=1, max_length=200)], lang: Lang = None):
        result = await call(thesaurus.lookup, vocid, label, lang)
        if not result:
            raise HTTPException(404, f"no concept labelled {label!r} in vocabulary {vocid!r}")
        return {"@context": CONTEXT, "result": result}

    for rel in ("broader", "narrower", "related"):
        def relation_route(vocid: str, uri: Uri, lang: Lang = None, rel: str = rel):
            async def inner():
                return {"@context": CONTEXT, "uri": uri, rel: await call(thesaurus.relation, vocid, uri, rel, lang)}
            return inner()
        rest.add_api_route(f"/{{vocid}}/{rel}", _wrap(relation_route), methods=["GET"], name=rel)

    for rel in ("broader", "narrower"):
        def transitive_route(vocid: str, uri: Uri, lang: Lang = None, rel: str = rel):
            async def inner():
                return {"@context": CONTEXT, "uri": uri,
                        f"{rel}Transitive": await call(thesaurus.transitive, vocid, uri, rel, lang)}
            return inner()
        rest.add_api_route(f"/{{vocid}}/{rel}Transitive", _wrap(transitive_route), methods=["GET"],
                           name=f"{rel}Transitive")

    @rest.get("/{vocid}/topConcepts")
    async def top_concepts(vocid: str, lang: Lang = None):
        return {"@context": CONTEXT, "uri": vocid, "topconcepts": await call(thesaurus.top_concepts, vocid, lang)}

    @rest.get("/{vocid}/hierarchy")
    async def hierarchy(vocid: str, uri: Uri, lang: Lang = None):
        return {"@context": CONTEXT, "uri": uri, "broaderTransitive": await call(thesaurus.hierarchy, vocid, uri, lang)}

    app.include_router(rest)

    @app.get("/autocomplete", summary="labels starting with q, for search boxes", responses=UNKNOWN_VOCABULARY)
    async def autocomplete(q: Annotated[str, Query(min_length=1, max_length=100)], lang: Lang = None,
                           vocab: str | None = None, limit: Annotated[int, Query(ge=1)] = 10):
        if vocab:
            await call(thesaurus.check_vocab, vocab)
        hits = await call(thesaurus.search, q.replace("*", ""), lang, vocab, limit_param(limit), 0, True)
        return {"q": q, "suggestions": [{"label": h.get("altLabel") or h["prefLabel"], "prefLabel": h["prefLabel"],
                                         "uri": h["uri"], "vocab": h["vocab"], "lang": h["lang"]} for h in hits]}

    @app.get("/expand", summary="query expansion: the concepts a free-text query matches and the terms to search",
             responses=UNKNOWN_VOCABULARY)
    async def expand(q: Annotated[str, Query(min_length=1, max_length=200)], lang: Lang = None,
                     depth: Annotated[int, Query(ge=0)] = 1, vocab: str | None = None,
                     languages: Languages = None,
                     words: Annotated[bool, Query(description="when q names no concept, look its words up")] = True):
        if depth > settings.max_depth:
            raise HTTPException(400, f"depth must be at most {settings.max_depth}")
        if vocab:
            await call(thesaurus.check_vocab, vocab)
        wanted = languages.split(",") if languages else None
        return await call(thesaurus.expand, q, lang, depth, vocab, languages=wanted, words=words)

    @app.get("/expand/batch", summary="several exact lookups in one request: the concepts each q names (its words "
                                       "are not looked up on their own) and their terms", responses=UNKNOWN_VOCABULARY)
    async def expand_batch(q: Annotated[list[str], Query(description=f"1 to {MAX_BATCH} texts")], lang: Lang = None,
                           depth: Annotated[int, Query(ge=0)] = 1, vocab: str | None = None,
                           languages: Languages = None):
        if not 1 <= len(q) <= MAX_BATCH or not all(1 <= len(text) <= 200 for text in q):
            raise HTTPException(400, f"q: 1 to {MAX_BATCH} texts of 1 to 200 characters each")
        if depth > settings.max_depth:
            raise HTTPException(400, f"depth must be at most {settings.max_depth}")
        if vocab:
            await call(thesaurus.check_vocab, vocab)
        wanted = languages.split(",") if languages else None
        return {"results": await call(lambda: [thesaurus.expand(text, lang, depth, vocab, languages=wanted, words=False)
                                               for text in q])}

    async def index() -> None:
        if not settings.index_path.exists():
            raise RuntimeError(f"no thesaurus index at {settings.index_path}")
        await run_in_threadpool(thesaurus.vocabularies)

    return install_kit(app, settings, checks={"index": index})


def _wrap(factory):
    """FastAPI needs a real coroutine function; the per-relation closures above return coroutines."""
    import functools
    import inspect

    @functools.wraps(factory)
    async def endpoint(*args, **kwargs):
        return await factory(*args, **kwargs)

    sig = inspect.signature(factory)
    endpoint.__signature__ = sig.replace(parameters=[p for n, p in sig.parameters.items() if n != "rel"])
    return endpoint
