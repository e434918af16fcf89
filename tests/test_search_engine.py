"""The dataset catalog of the federated search: EODAG's ~400 collections (offline) plus a real local catalog,
searched with ranked, thesaurus-expanded free text (GEMET en+fr and INSPIRE loaded in a real thesaurus)."""

from __future__ import annotations

import json
import string
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from eolake_search.app import create_app
from eolake_search.engine import stem
from eolake_search.settings import ProviderConfig, SearchSettings
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from test_search import ALPHA, catalogs, databases, free_port, problem, thesaurus  # noqa: F401 (fixtures)

from servers import served

EODAG = ["cop_dataspace", "cop_marine", "cop_cds", "cop_ads", "eumetsat_ds", "wekeo_main", "dedl", "usgs"]


def search_settings(catalog: str, thesaurus_url: str, storage) -> SearchSettings:
    return SearchSettings(
        peers={"catalog": {"url": catalog}, "thesaurus": {"url": thesaurus_url}},
        local_provider="alpha",
        root_path="/search",
        storage_path=storage,
        max_limit=50,
        providers=[ProviderConfig(name=n, kind="eodag", item_search=False) for n in EODAG],
    )


@pytest.fixture(scope="module")
def engine(catalogs, thesaurus, tmp_path_factory):  # noqa: F811
    with TestClient(create_app(search_settings(catalogs["alpha"], thesaurus, tmp_path_factory.mktemp("s")))) as c:
        yield c


def ids(answer: dict) -> list[str]:
    return [c["id"] for c in answer["collections"]]


def found(client, **params) -> dict:
    response = client.get("/search/collections", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_catalog_holds_every_provider_in_one_shape(engine):
    everything = found(engine, limit=50)
    assert everything["numberMatched"] > 300  # EODAG's collections, duplicates across providers collapsed once
    local = found(engine, filter="id = 'floods'")
    assert ids(local) == ["floods"] and local["collections"][0]["federation:backends"] == ["alpha"]
    s2 = found(engine, filter="id = 'S2_MSI_L2A'")["collections"][0]
    assert {"cop_dataspace", "dedl"} <= set(s2["federation:backends"])
    assert s2["summaries"]["instruments"] == ["MSI"] and s2["summaries"]["processing:level"] == ["L2"]
    assert s2["license"] and s2["extent"]["spatial"]["bbox"] and s2["keywords"]
    conformance = engine.get("/search/conformance").json()["conformsTo"]
    assert "https://api.stacspec.org/v1.0.0-rc.1/collection-search#free-text" in conformance
    assert engine.get("/search/collections/S2_MSI_L2A").json()["title"] == s2["title"]


@pytest.mark.parametrize(
    ("q", "lang", "topic"),
    [
        ("sécheresse", "fr", "drought"),
        ("salinité de l'océan", "fr", "salinity"),
        ("aerosols", None, "aerosol"),
        ("drought", "en", "drought"),
    ],
)
def test_cross_language_queries_find_the_topic(engine, q, lang, topic):
    answer = found(engine, q=q, limit=10, **({"lang": lang} if lang else {}))
    top = answer["collections"][:2]
    about = [c for c in top if topic in (c["title"] + " " + c["description"] + " ".join(c["keywords"])).lower()]
    assert len(about) == 2, [c["title"] for c in answer["collections"]]


def test_expansion_is_reported_ranked_below_and_can_be_turned_off(engine):
    answer = found(engine, q="sécheresse", lang="fr")
    expansion = answer["expansion"]
    assert expansion["applied"] and any("drought" in t.lower() for t in expansion["terms"])
    assert expansion["concepts"] and expansion["concepts"][0]["why"] and expansion["why"]["equivalents"]
    off = found(engine, q="sécheresse", expand="false")
    assert off["expansion"] == {"applied": False, "reason": "expand=false"}
    assert off["numberMatched"] < answer["numberMatched"]
    # a record matching the user's own word ranks above every one found only through the thesaurus
    mixed = found(engine, q="ocean", limit=50)["collections"]
    own = [
        i
        for i, c in enumerate(mixed)
        if "ocean" in json.dumps([c["id"], c["title"], c["description"], c["keywords"], c["summaries"]]).lower()
    ]
    assert own and own == list(range(len(own)))


def test_thesaurus_down_searches_unexpanded_with_a_notice(catalogs, tmp_path):  # noqa: F811
    dead = f"http://127.0.0.1:{free_port()}"
    with TestClient(create_app(search_settings(catalogs["alpha"], dead, tmp_path))) as client:
        answer = found(client, q="ocean salinity")
        assert answer["numberMatched"] > 0 and answer["expansion"]["applied"] is False
        assert "unavailable" in answer["expansion"]["error"]
        suggestions = client.get("/search/suggest", params={"q": "sentin"}).json()
        assert suggestions["suggestions"] and "unavailable" in suggestions["notice"]


def test_facets_add_up_to_number_matched(engine):
    answer = found(engine, q="sea surface temperature", facets="true")
    matched, facets = answer["numberMatched"], answer["facets"]
    for name in ("provider", "platform", "instrument", "processing_level", "keyword"):
        counts = facets[name]["counts"]
        assert all(0 < c["count"] <= matched for c in counts)
        if facets[name]["distinct"] <= 20:  # all values listed: each record has one or more, or is missing
            assert sum(c["count"] for c in counts) + facets[name]["missing"] >= matched
    narrowed = found(
        engine,
        q="sea surface temperature",
        filter=f"a_overlaps(provider, ('{facets['provider']['counts'][0]['value']}'))",
    )
    assert narrowed["numberMatched"] == facets["provider"]["counts"][0]["count"]
    # without free text, every record counts once in a single-valued facet (here: the local catalog's floods
    # collection has no level and is among the missing)
    level = found(engine, filter="id = 'floods' or id = 'S2_MSI_L2A'")["facets"]["processing_level"]
    assert sum(c["count"] for c in level["counts"]) + level["missing"] == 2


def test_browsing_without_free_text_has_facets_that_narrow(engine):
    everything = found(engine, limit=1)
    assert "expansion" not in everything and everything["numberMatched"] > 300
    facets = everything["facets"]
    assert set(facets) == {"provider", "platform", "instrument", "processing_level", "keyword", "decade"}
    for name, queryable in (("decade", "decade"), ("platform", "platform"), ("keyword", "keywords")):
        top = facets[name]["counts"][0]
        narrowed = found(engine, limit=1, filter=f"a_overlaps({queryable}, ('{top['value']}'))")
        assert narrowed["numberMatched"] == top["count"] < everything["numberMatched"]
        assert narrowed["facets"][name]["counts"][0] == top  # every record left has that value
    queryables = engine.get("/search/collection-queryables").json()["properties"]
    assert "decade" in queryables


def test_decades_of_a_temporal_extent():
    from eolake_search.discovery import decades

    def extent(start, end):
        return {"extent": {"temporal": {"interval": [[start, end]]}}}

    assert decades(extent("1998-06-01T00:00:00Z", "2011-01-01T00:00:00Z")) == ("1990s", "2000s", "2010s")
    assert decades(extent("2017-03-28T00:00:00Z", None), this_year=2026) == ("2010s", "2020s")
    assert decades(extent(None, "2020-01-01")) == () and decades({"id": "no extent"}) == ()
    assert decades(extent("2020-01-01", "2019-01-01")) == ()  # an end before the start covers nothing


def test_paging_is_stable_and_tokens_are_checked(engine):
    first = found(engine, q="sentinel", limit=7)
    seen, page = ids(first), first
    while (nxt := [link for link in page["links"] if link["rel"] == "next"]) and len(seen) < 200:
        page = engine.get(nxt[0]["href"].removeprefix("http://127.0.0.1:8080")).json()
        seen += ids(page)
    assert len(seen) == len(set(seen)) == first["numberMatched"]
    assert ids(found(engine, q="sentinel", limit=7)) == ids(first)  # the same order every time
    token = [link for link in first["links"] if link["rel"] == "next"][0]["href"].split("token=")[1]
    problem(engine.get("/search/collections", params={"q": "landsat", "token": token}), 400)
    problem(engine.get("/search/collections", params={"token": "forged.token"}), 400)


def test_sort_fields_filter_and_bad_inputs(engine):
    by_title = found(engine, q="sentinel", sortby="-title", limit=20)["collections"]
    assert [c["title"].lower() for c in by_title] == sorted((c["title"].lower() for c in by_title), reverse=True)
    slim = found(engine, fields="id,title", limit=3)["collections"][0]
    assert set(slim) <= {"id", "title", "type", "stac_version", "links"}
    assert "sortby" in problem(engine.get("/search/collections", params={"sortby": "nope"}), 400)["detail"]
    problem(engine.get("/search/collections", params={"filter": "id = = 1"}), 400)
    problem(engine.get("/search/collections", params={"unknown": "1"}), 400)
    problem(engine.get("/search/collections", params={"limit": "x"}), 400)
    assert found(engine, q="xyzzyqwertz")["numberMatched"] == 0


def test_suggestions_in_the_users_language(engine):
    french = engine.get("/search/suggest", params={"q": "sécher", "lang": "fr"}).json()["suggestions"]
    assert any(s["kind"] == "concept" and s["label"].lower().startswith("sécher") for s in french), french
    titles = engine.get("/search/suggest", params={"q": "sentinel-2"}).json()["suggestions"]
    assert any(s["kind"] == "dataset" and "sentinel2" in s["label"].lower() for s in titles), titles


def test_items_match_through_their_collection(engine):
    """Items say nothing of hydrology; their collection's keywords do."""
    answer = engine.get("/search/search", params={"q": "hydrologie", "lang": "fr", "limit": 50}).json()
    assert len(answer["features"]) == len(ALPHA) and answer["expansion"]["collections"] == ["floods"]
    # without the thesaurus the French word still meets "hydrology" through its stem; an unknown word finds nothing
    off = engine.get("/search/search", params={"q": "hydrologie", "expand": "false", "limit": 50}).json()
    assert len(off["features"]) == len(ALPHA)
    assert engine.get("/search/search", params={"q": "xyzzyqwertz", "expand": "false"}).json()["features"] == []


CHARACTERS = st.text(
    alphabet=st.sampled_from(string.punctuation + " éèàçœÆßøñ北京\u200b\u0301\u00a0'’«»—…"), min_size=1, max_size=30
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.one_of(CHARACTERS, st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t)))
def test_any_punctuation_or_non_ascii_text_is_a_200(engine, q):
    response = engine.get("/search/collections", params={"q": q, "expand": "false", "limit": 3})
    assert response.status_code == 200, (q, response.text)


def test_python_client_and_cli_take_free_text(engine, capsys):
    from eolake_client import cli
    from eolake_client.client import Client

    client = Client("http://127.0.0.1:8080")
    client.http = engine  # the service in process: the client's own requests, paths and paging
    datasets = client.dataset_search("salinité de l'océan", lang="fr", limit=5)
    assert datasets["collections"] and "salinity" in datasets["collections"][0]["description"].lower()
    search = client.federated_search(q="hydrologie", lang="fr", max_items=20, limit=7)
    assert len(list(search.items_as_dicts())) == len(ALPHA) and search.expansion["collections"] == ["floods"]
    assert any(s["kind"] == "dataset" for s in client.suggest("sentinel"))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "_client", lambda args: client)
        patch.setattr(client, "close", lambda: None)  # the CLI closes its client: not the module's service
        assert cli.main(["datasets", "--q", "aerosols", "--limit", "3"]) == 0
        out, err = capsys.readouterr()
        assert len(out.splitlines()) == 3 and "matched" in err
        assert cli.main(["search", "--federated", "--q", "hydrologie", "--lang", "fr", "--limit", "5"]) == 0
        printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(printed) == 5 and {p["collection"] for p in printed} == {"floods"}  # items, found in French
        assert cli.main(["search", "--q", "hydrologie"]) != 0
        assert "--federated" in capsys.readouterr().err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=CHARACTERS)
def test_any_punctuation_in_item_free_text_is_a_200(engine, q):
    response = engine.get("/search/search", params={"q": q, "expand": "false", "limit": 3})
    assert response.status_code == 200, (q, response.text)


def test_stemming_in_several_threads_at_once_gives_each_its_own_words():
    # the index is rebuilt in a thread while queries stem on the event loop
    words = ["hydrological", "salinités", "observations", "précipitations", "measurements", "inondations"] * 400
    expected = [stem.__wrapped__(w, "en" if i % 2 else "fr") for i, w in enumerate(words)]

    def stem_all(_) -> list[str]:
        return [stem.__wrapped__(w, "en" if i % 2 else "fr") for i, w in enumerate(words)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert all(found == expected for found in pool.map(stem_all, range(12)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=CHARACTERS)
def test_any_punctuation_expanded_through_the_thesaurus_is_a_200(engine, q):
    response = engine.get("/search/collections", params={"q": q, "limit": 3})
    assert response.status_code == 200, (q, response.text)
    assert ("expansion" in response.json()) == bool(q.strip())  # blank text is no query: everything, unexpanded


def test_french_words_are_looked_up_in_the_forms_vocabularies_write():
    from eolake_search.expansion import lookup_forms

    assert {"neige"} <= set(lookup_forms("neigeuses")) and "nuage" in lookup_forms("nuageux")
    assert lookup_forms("feux")[:2] == ["feux", "feu"] and "niveau" in lookup_forms("niveaux")
    assert "urbain" in lookup_forms("urbaines") and "météorologie" in lookup_forms("météorologique")
    assert lookup_forms("virus") == ["virus"] and lookup_forms("glass") == ["glass"]


def record(cid: str, title: str, description: str = "", keywords: tuple[str, ...] = ()) -> dict:
    return {"id": cid, "title": title, "description": description, "keywords": list(keywords)}


def test_cognates_meet_across_languages_but_short_stems_do_not():
    from eolake_search.engine import Index, Query

    index = Index(
        [
            record("era", "Global atmospheric reanalysis"),
            record("solar", "Solar radiation"),
            record("other", "Sea ice concentration"),
        ]
    )
    assert [r["id"] for r, _ in index.rank(Query.parse("réanalyse"))] == ["era"]
    assert [r["id"] for r, _ in index.rank(Query.parse("précipitations hydrologie"))] == []
    assert index.rank(Query.parse("sol ")) == []  # "sol" is no prefix of "solar": too short to guess


def test_french_learned_endings_meet_their_english_spelling():
    from eolake_search.engine import Index, Query, english_cognates

    assert english_cognates("urbaines") == ["urban"] and english_cognates("humidité") == ["humidity"]
    assert english_cognates("numérique") == ["numeric", "numerical"] and english_cognates("sol") == []
    index = Index(
        [
            record("ghs", "Degree of urbanisation of urban centres"),
            record("hum", "Relative humidity"),
            record("dem", "Numerical terrain data"),
            record("other", "Sea ice concentration"),
        ]
    )
    assert [r["id"] for r, _ in index.rank(Query.parse("urbaines"))] == ["ghs"]
    assert [r["id"] for r, _ in index.rank(Query.parse("humidité"))] == ["hum"]
    assert [r["id"] for r, _ in index.rank(Query.parse("numérique"))] == ["dem"]


def test_the_parts_of_a_query_that_may_name_a_concept():
    from eolake_search.engine import Query
    from eolake_search.expansion import sub_phrases

    q = "carte d'occupation du sol en France"
    parts = sub_phrases(q, set(Query.parse(q).words))
    assert parts["occupation du sol"] == ["occupation", "sol"]  # the elided article dropped
    assert not any(p.split()[0] in ("du", "en") or p.split()[-1] in ("du", "en") for p in parts)
    assert q not in parts and sub_phrases("land cover", {"land", "cover"}) == {}  # the whole is looked up anyway


def test_a_parts_concept_stands_for_each_of_its_words():
    from eolake_search.engine import Index, Query

    index = Index(
        [
            record("lc", "Global land cover map"),
            record("ice", "Sea ice"),
            record("lc-text", "Classification", "Yearly land cover classes of Europe"),
        ]
    )
    query = Query.parse("occupation du sol")
    assert index.rank(query) == []
    query.parts = [(["occupation", "sol"], ["land cover"])]
    ranked = index.rank(query)
    assert [r["id"] for r, _ in ranked] == ["lc", "lc-text"]  # a title naming it above a description mentioning it
    full = Query.parse("land cover")
    assert ranked[0][1] < index.rank(full)[0][1]  # below what the words themselves would score


def test_a_concept_named_inside_a_longer_query_expands_its_words(engine):
    expansion = found(engine, q="carte d'occupation du sol", lang="fr")["expansion"]
    assert "land cover" in expansion["terms"]
    assert any(c["prefLabel"] == "occupation du sol" and c["vocab"] == "eo" for c in expansion["concepts"])


def test_a_word_named_in_a_title_ranks_above_one_mentioned_in_a_description():
    from eolake_search.engine import Index, Query

    index = Index(
        [
            record(
                "passing",
                "Sea surface temperature",
                "Daily fields. Other products of this service include a reanalysis of the ocean.",
            ),
            record("about", "Ocean reanalysis", "Physical ocean state, daily fields."),
        ]
    )
    assert [r["id"] for r, _ in index.rank(Query.parse("reanalysis daily"))] == ["about", "passing"]


def test_a_very_long_query_is_looked_up_in_several_requests_and_still_expanded(engine):
    from eolake_search.expansion import batches

    words = [f"{'é' * (150 + i)}s" for i in range(6)]  # plurals: each looked up as typed and in the singular
    q = " ".join(["sécheresse", *words])  # under the search's bound of 1000 characters, ~12 KiB of lookups
    assert len(batches([q[:200], *words, *(w[:-1] for w in words)])) > 1
    assert [len(b) for b in batches([f"w{i}" for i in range(100)])] == [64, 36]  # the thesaurus's bound per request
    answer = found(engine, q=q, limit=3)
    assert answer["expansion"]["applied"], answer["expansion"]


def test_a_processing_level_is_one_token_that_the_plain_word_level_does_not_meet():
    from eolake_search.engine import Index, Query

    index = Index(
        [
            record("gauge", "River water level", "Daily water levels at gauging stations."),
            record("olci", "Sentinel-3 OLCI Level-2 water full resolution", "Water-leaving reflectance."),
            record("s2", "Sentinel-2 Level-2A", "Bottom-of-atmosphere reflectance from Level-1C."),
            record("s5p", "Sentinel-5P L2 methane", "Total column methane."),
        ]
    )
    assert [r["id"] for r, _ in index.rank(Query.parse("level"))] == ["gauge"]
    for typed in ("Level-2A", "level 2A", "niveau 2A", "L2A"):
        assert [r["id"] for r, _ in index.rank(Query.parse(typed))] == ["s2"], typed
    assert {r["id"] for r, _ in index.rank(Query.parse("Level-2"))} == {"olci", "s2", "s5p"}  # L2A is a Level-2
    assert {r["id"] for r, _ in index.rank(Query.parse("L1C"))} == {"s2"}
    assert [r["id"] for r, _ in index.rank(Query.parse("2"))] == ["s2"]  # the 2 of Sentinel-2; "L2" is not a "2"


def test_related_concepts_count_once_at_the_lowest_weight():
    from eolake_search.engine import Index, Query

    index = Index(
        [
            record("drought", "Drought monitor"),
            record("ssm", "Surface soil moisture"),
            record("many", "Land reanalysis", "Precipitation, evaporation and soil moisture, among others."),
            record("sst", "Sea surface temperature"),
        ]
    )
    query = Query.parse("sécheresse")
    query.alternatives = {"sécheresse": ["drought"]}
    query.related = [["soil moisture", "humidité du sol"], ["precipitation"], ["evaporation"]]
    ranked = [(r["id"], score) for r, score in index.rank(query)]
    assert ranked[0][0] == "drought" and {i for i, _ in ranked[1:]} == {"ssm", "many"}
    # each the best of one related concept: mentioning three in passing is not more
    assert ranked[1][1] == ranked[2][1] < ranked[0][1] / 5


def test_a_need_met_through_related_concepts_finds_them_and_says_why(engine):
    answer = found(engine, q="sécheresse", limit=20)
    expansion = answer["expansion"]
    related = {c["prefLabel"]: c for c in expansion["concepts"] if c["relation"] == "related"}
    assert related["soil moisture"]["why"] == "related to 'drought'" and expansion["why"]["related"]
    assert "soil moisture" in expansion["terms"]
    assert {"METOP_SOMO12", "METOP_SOMO25"} <= set(ids(answer))  # soil moisture: how droughts are watched
    plain = found(engine, q="sécheresse", depth=0, limit=20)  # the named concepts only
    assert not [c for c in plain["expansion"]["concepts"] if c["relation"] == "related"]
    assert "METOP_SOMO12" not in ids(plain)


def test_the_next_page_reuses_the_search_and_a_recovered_thesaurus_expands_again(catalogs, thesaurus, tmp_path):  # noqa: F811
    calls: list[str] = []
    state = {"down": True}

    async def forward(request):
        calls.append(request.url.path)
        if state["down"]:
            return JSONResponse({"detail": "down"}, status_code=503)
        async with httpx.AsyncClient() as client:
            r = await client.get(f"{thesaurus}{request.url.path}?{request.url.query}")  # every q of a batch
        return Response(r.content, r.status_code, media_type="application/json")

    flaky = Starlette(routes=[Route("/{path:path}", forward)])
    with served(flaky) as url, TestClient(create_app(search_settings(catalogs["alpha"], url, tmp_path))) as client:
        first = found(client, q="ocean salinity", limit=5)
        assert first["expansion"]["applied"] is False  # down: unexpanded, and not kept
        state["down"] = False
        expanded = found(client, q="ocean salinity", limit=5)
        assert expanded["expansion"]["applied"], (expanded["expansion"], calls)
        assert expanded["numberMatched"] >= first["numberMatched"]
        asked = len(calls)
        following = client.get(next(link["href"] for link in expanded["links"] if link["rel"] == "next"))
        second = following.json()
        assert len(calls) == asked  # the next page: the same search, not asked of the thesaurus again
        assert second["numberMatched"] == expanded["numberMatched"] and second["expansion"] == expanded["expansion"]
        assert not set(ids(expanded)) & set(ids(second))
