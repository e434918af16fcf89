"""The thesaurus's routes: the Skosmos-compatible REST subset (/rest/v1), autocomplete and query expansion. Each
parses, calls the core through the Index dependency, and answers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from eolake_thesaurus.dependencies import IndexCalls, Settings

CONTEXT = {"skos": "http://www.w3.org/2004/02/skos/core#", "uri": "@id", "type": "@type"}
Lang = Annotated[str | None, Query(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]+)*$", description="language code")]
MAX_BATCH = 64  # texts in one /expand/batch request (a query's words and their forms)
Languages = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z]{2,3}(,[A-Za-z]{2,3})*$",
        description="comma-separated: only labels in these languages (and those without one)",
    ),
]
Uri = Annotated[str, Query(min_length=1, max_length=2000)]
Text = Annotated[str, Query(min_length=1, max_length=200)]
Depth = Annotated[int, Query(ge=0)]
Related = Annotated[bool, Query(description="also the concepts skos:related to those q names (one link)")]
MaxHits = Annotated[int, Query(ge=1)]
Offset = Annotated[int, Query(ge=0)]
UNKNOWN_VOCABULARY: dict[int | str, dict[str, Any]] = {
    404: {"description": "the vocabulary named in `vocab` does not exist"}
}

service = APIRouter()
rest = APIRouter(prefix="/rest/v1")


@service.get("/", summary="landing page")
async def landing(settings: Settings):
    base = settings.service_url
    return {
        "title": "eolake thesaurus",
        "links": [
            {"rel": "vocabularies", "href": f"{base}/rest/v1/vocabularies"},
            {"rel": "search", "href": f"{base}/rest/v1/search?query=flood*"},
            {"rel": "autocomplete", "href": f"{base}/autocomplete?q=flo"},
            {"rel": "expand", "href": f"{base}/expand?q=inondation"},
            {"rel": "service-doc", "href": f"{base}/docs"},
        ],
    }


@rest.get("/vocabularies")
async def vocabularies(index: IndexCalls, lang: Lang = None):
    return {"@context": CONTEXT, "uri": "", "vocabularies": await index(index.thesaurus.vocabularies)}


@rest.get("/search", responses=UNKNOWN_VOCABULARY)
async def search(
    index: IndexCalls,
    query: Text,
    lang: Lang = None,
    vocab: str | None = None,
    maxhits: MaxHits = 50,
    offset: Offset = 0,
):
    vocabs = vocab.split() if vocab else [None]
    for v in vocabs:
        await index.check_vocab(v)
    results = []
    for v in vocabs:
        results += await index(index.thesaurus.search, query, lang, v, index.limit(maxhits), offset)
    return {"@context": CONTEXT, "uri": "", "results": results[:maxhits]}


@rest.get("/{vocid}/")
async def vocabulary(index: IndexCalls, vocid: str):
    return await index(index.thesaurus.vocabulary, vocid)


@rest.get("/{vocid}/search")
async def vocab_search(
    index: IndexCalls, vocid: str, query: Text, lang: Lang = None, maxhits: MaxHits = 50, offset: Offset = 0
):
    await index.check_vocab(vocid)
    return {
        "@context": CONTEXT,
        "uri": "",
        "results": await index(index.thesaurus.search, query, lang, vocid, index.limit(maxhits), offset),
    }


@rest.get("/{vocid}/data")
async def data(index: IndexCalls, vocid: str, uri: Uri, lang: Lang = None):
    return {"@context": CONTEXT, **await index(index.thesaurus.concept, vocid, uri, lang)}


@rest.get("/{vocid}/label")
async def label(index: IndexCalls, vocid: str, uri: Uri, lang: Lang = None):
    thesaurus = index.thesaurus
    await index(thesaurus.check_concept, vocid, uri)
    labels = await index(thesaurus.labels, vocid, uri)
    return {
        "@context": CONTEXT,
        "uri": uri,
        "prefLabel": await index(thesaurus.pref_label, vocid, uri, lang),
        "prefLabels": labels["prefLabel"],
        "altLabel": labels["altLabel"],
        "hiddenLabel": labels["hiddenLabel"],
    }


@rest.get("/{vocid}/lookup")
async def lookup(index: IndexCalls, vocid: str, label: Text, lang: Lang = None):
    result = await index(index.thesaurus.lookup, vocid, label, lang)
    if not result:
        raise HTTPException(404, f"no concept labelled {label!r} in vocabulary {vocid!r}")
    return {"@context": CONTEXT, "result": result}


def _relation(rel: str):
    async def endpoint(index: IndexCalls, vocid: str, uri: Uri, lang: Lang = None):
        return {"@context": CONTEXT, "uri": uri, rel: await index(index.thesaurus.relation, vocid, uri, rel, lang)}

    return endpoint


def _transitive(rel: str):
    async def endpoint(index: IndexCalls, vocid: str, uri: Uri, lang: Lang = None):
        return {
            "@context": CONTEXT,
            "uri": uri,
            f"{rel}Transitive": await index(index.thesaurus.transitive, vocid, uri, rel, lang),
        }

    return endpoint


for _rel in ("broader", "narrower", "related"):
    rest.add_api_route(f"/{{vocid}}/{_rel}", _relation(_rel), methods=["GET"], name=_rel)
for _rel in ("broader", "narrower"):
    rest.add_api_route(f"/{{vocid}}/{_rel}Transitive", _transitive(_rel), methods=["GET"], name=f"{_rel}Transitive")


@rest.get("/{vocid}/topConcepts")
async def top_concepts(index: IndexCalls, vocid: str, lang: Lang = None):
    return {"@context": CONTEXT, "uri": vocid, "topconcepts": await index(index.thesaurus.top_concepts, vocid, lang)}


@rest.get("/{vocid}/hierarchy")
async def hierarchy(index: IndexCalls, vocid: str, uri: Uri, lang: Lang = None):
    return {
        "@context": CONTEXT,
        "uri": uri,
        "broaderTransitive": await index(index.thesaurus.hierarchy, vocid, uri, lang),
    }


@service.get("/autocomplete", summary="labels starting with q, for search boxes", responses=UNKNOWN_VOCABULARY)
async def autocomplete(
    index: IndexCalls,
    q: Annotated[str, Query(min_length=1, max_length=100)],
    lang: Lang = None,
    vocab: str | None = None,
    limit: Annotated[int, Query(ge=1)] = 10,
):
    await index.check_vocab(vocab)
    hits = await index(index.thesaurus.search, q.replace("*", ""), lang, vocab, index.limit(limit), 0, True)
    return {
        "q": q,
        "suggestions": [
            {
                "label": h.get("altLabel") or h["prefLabel"],
                "prefLabel": h["prefLabel"],
                "uri": h["uri"],
                "vocab": h["vocab"],
                "lang": h["lang"],
            }
            for h in hits
        ],
    }


@service.get(
    "/expand",
    summary="query expansion: the concepts a free-text query matches and the terms to search",
    responses=UNKNOWN_VOCABULARY,
)
async def expand(
    index: IndexCalls,
    q: Text,
    lang: Lang = None,
    depth: Depth = 1,
    vocab: str | None = None,
    languages: Languages = None,
    words: Annotated[bool, Query(description="when q names no concept, look its words up")] = True,
    related: Related = False,
):
    index.depth(depth)
    await index.check_vocab(vocab)
    wanted = languages.split(",") if languages else None
    return await index(index.thesaurus.expand, q, lang, depth, vocab, languages=wanted, words=words, related=related)


@service.get(
    "/expand/batch",
    summary="several exact lookups in one request: the concepts each q names (its words "
    "are not looked up on their own) and their terms",
    responses=UNKNOWN_VOCABULARY,
)
async def expand_batch(
    index: IndexCalls,
    q: Annotated[list[str], Query(description=f"1 to {MAX_BATCH} texts")],
    lang: Lang = None,
    depth: Depth = 1,
    vocab: str | None = None,
    languages: Languages = None,
    related: Related = False,
):
    if not 1 <= len(q) <= MAX_BATCH or not all(1 <= len(text) <= 200 for text in q):
        raise HTTPException(400, f"q: 1 to {MAX_BATCH} texts of 1 to 200 characters each")
    index.depth(depth)
    await index.check_vocab(vocab)
    wanted = languages.split(",") if languages else None
    expand_each = index.thesaurus.expand
    return {
        "results": await index(
            lambda: [
                expand_each(text, lang, depth, vocab, languages=wanted, words=False, related=related) for text in q
            ]
        )
    }
