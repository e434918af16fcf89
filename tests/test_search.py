"""Federated search against real STAC APIs on loopback: two catalog processes on their own pgstac databases
(overlapping items), a proxy that delays beyond its provider's timeout, one that answers 500, and the thesaurus."""

from __future__ import annotations

import asyncio
import json
import socket
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

import httpx
import psycopg
import pytest
from eolake_search.app import create_app
from eolake_search.settings import ProviderConfig, SearchSettings
from eolake_thesaurus.app import create_app as thesaurus_app
from eolake_thesaurus.settings import ThesaurusSettings
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import servers
from eolake.ingest import ingest
from servers import served, service_process

SQUARE = {"type": "Polygon", "coordinates": [[[1.0, 43.0], [1.5, 43.0], [1.5, 43.5], [1.0, 43.5], [1.0, 43.0]]]}


def collection(cid: str) -> dict:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": cid,
        "description": cid,
        "license": "CC-BY-4.0",
        "title": "Garonne gauges",
        "keywords": ["hydrology", "river"],
        "links": [],
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2023-01-01T00:00:00Z", None]]},
        },
    }


def item(iid: str, day: int, title: str = "water level", keywords: list[str] | None = None, cid: str = "floods"):
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": iid,
        "collection": cid,
        "geometry": SQUARE,
        "bbox": [1.0, 43.0, 1.5, 43.5],
        "links": [],
        "assets": {},
        "properties": {"datetime": f"2023-01-{day:02d}T10:00:00Z", "title": title, "keywords": keywords or ["gauge"]},
    }


# alpha: f00..f14 and an item tagged only with a narrower term of "hydrologic cycle" (low flow);
# beta: f10..f19 (f10..f14 duplicate alpha's), g00..g04, and an item tagged only with the English "flooding".
ALPHA = [item(f"f{i:02d}", i + 1) for i in range(15)] + [item("x-lowflow", 28, "Summer at Toulouse", ["low flow"])]
BETA = (
    [item(f"f{i:02d}", i + 1) for i in range(10, 20)]
    + [item(f"g{i:02d}", i + 3) for i in range(5)]
    + [item("x-flooding", 27, "Garonne in spate", ["flooding"])]
)
UNIQUE = {i["id"] for i in ALPHA + BETA}


def write_ndjson(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def databases(pg, tmp_path_factory):
    """Two pgstac databases in the session cluster: one migrated template, copied (fast) twice."""
    from pypgstac.db import PgstacDB
    from pypgstac.migrate import Migrate

    from eolake_catalog.schema import migrate as catalog_migrate

    names = ["fed_template", "fed_alpha", "fed_beta"]
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        for name in reversed(names):
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute("CREATE DATABASE fed_template")
    with psycopg.connect(pg.dsn("fed_template"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    with PgstacDB(dsn=pg.dsn("fed_template")) as db:
        Migrate(db).run_migration()
    with psycopg.connect(pg.dsn("fed_template")) as conn:  # the catalog's own migration step, as each target runs it
        catalog_migrate(pg.dsn("fed_template"), app_role=conn.info.user)
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        for name in names[1:]:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE fed_template")
    folder = tmp_path_factory.mktemp("fed-data")  # read by ingest in this process: pytest's tmp is fine
    for name, items in (("fed_alpha", ALPHA), ("fed_beta", BETA)):
        report = ingest([write_ndjson(folder / f"{name}.ndjson", [collection("floods"), *items])], pg.dsn(name))
        assert not report.rejected, report.rejected
    yield {n: pg.dsn(n) for n in names[1:]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def catalogs(databases, tmp_path_factory):
    logs = tmp_path_factory.mktemp("fed-logs")
    with ExitStack() as stack:
        urls = {
            name: stack.enter_context(catalog_process(databases[f"fed_{name}"], logs / f"{name}.log"))
            for name in ("alpha", "beta")
        }
        yield urls


@contextmanager
def catalog_process(dsn: str, log: Path):
    """A catalog whose public URL is its own address (its next links must point at itself here)."""
    port = free_port()
    # The module's searches come from one loopback address faster than the catalog's per-client rate: not limited
    # here (a provider answering 429 is a partial page, which only some tests ask for).
    env = {
        "EOLAKE_CATALOG_DATABASE_URL": dsn,
        "EOLAKE_CATALOG_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "EOLAKE_CATALOG_ROOT_PATH": "",
        "EOLAKE_CATALOG_RATE_LIMIT": json.dumps({"requests_per_second": 1000, "burst": 1000}),
    }
    with mock.patch.object(servers, "free_port", lambda: port), service_process("eolake_catalog", env, log) as url:
        yield url


def proxy(upstream: str, delay: float = 0.0, fail: bool = False) -> Starlette:
    async def forward(request: Request) -> Response:
        if fail:
            return JSONResponse({"detail": "provider exploded"}, status_code=500)
        body = await request.body()
        await asyncio.sleep(delay)
        async with httpx.AsyncClient() as client:
            r = await client.request(
                request.method,
                upstream + request.url.path,
                params=request.query_params,
                content=body,
                headers={"content-type": "application/json"},
            )
        return Response(r.content, r.status_code, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])


@pytest.fixture(scope="module")
def thesaurus(thesaurus_storage):
    with served(thesaurus_app(ThesaurusSettings(storage_path=thesaurus_storage, root_path=""))) as url:
        yield url


@pytest.fixture(scope="module")
def search(catalogs, thesaurus, tmp_path_factory):
    with served(proxy(catalogs["beta"], delay=5)) as slow, served(proxy(catalogs["beta"], fail=True)) as broken:
        settings = SearchSettings(
            peers={"catalog": {"url": catalogs["alpha"]}, "thesaurus": {"url": thesaurus}},
            local_provider="alpha",
            root_path="/search",
            storage_path=tmp_path_factory.mktemp("search"),
            max_limit=50,
            providers=[
                ProviderConfig(name="beta", url=catalogs["beta"], timeout_seconds=20, free_text="filter"),
                ProviderConfig(name="slow", url=slow, timeout_seconds=0.5, free_text="filter"),
                ProviderConfig(name="broken", url=broken, timeout_seconds=5),
            ],
        )
        with TestClient(create_app(settings)) as client:
            yield client


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


def walk(search, first: dict, method: str = "POST") -> list[dict]:
    pages, body = [], first
    url = "/search/search"
    response = search.post(url, json=body) if method == "POST" else search.get(url, params=body)
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        nxt = [link for link in page["links"] if link["rel"] == "next"]
        if not nxt or len(pages) > 50:
            return pages
        if method == "POST":
            response = search.post("/search/search", json={**body, **nxt[0]["body"]})
        else:
            response = search.get(nxt[0]["href"].removeprefix("http://127.0.0.1:8080"))


def test_merge_statuses_and_duplicates(search):
    page = search.post("/search/search", json={"collections": ["floods"], "limit": 50}).json()
    fed = page["federation"]
    assert fed["alpha"]["status"] == "ok" and fed["beta"]["status"] == "ok"
    assert fed["slow"]["status"] == "timeout" and fed["slow"]["ms"] < 4000
    assert fed["broken"]["status"] == "error" and "500" in fed["broken"]["error"]
    ids = [f["id"] for f in page["features"]]
    assert len(ids) == len(set(ids)) == len(UNIQUE)
    by_id = {f["id"]: f for f in page["features"]}
    assert sorted(by_id["f12"]["properties"]["federation:backends"]) == ["alpha", "beta"]
    assert by_id["g01"]["properties"]["federation:backends"] == ["beta"]
    times = [f["properties"]["datetime"] for f in page["features"]]
    assert times == sorted(times, reverse=True)
    # several providers holding copies: the total is not known, so none is given (never a wrong one)
    assert "numberMatched" not in page and "matched" not in page["context"]
    assert page["partial"] is True and page["failed_providers"] == ["broken", "slow"]


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_pagination_walks_every_result_exactly_once(search, method):
    pages = walk(
        search,
        {
            "collections": "floods" if method == "GET" else ["floods"],
            "limit": 4,
            "providers": "alpha,beta" if method == "GET" else ["alpha", "beta"],
        },
        method,
    )
    ids = [f["id"] for p in pages for f in p["features"]]
    assert sorted(ids) == sorted(UNIQUE) and len(ids) == len(set(ids))
    times = [f["properties"]["datetime"] for p in pages for f in p["features"]]
    assert times == sorted(times, reverse=True)
    assert len(pages) >= len(UNIQUE) // 4
    assert all(p["partial"] is False and p["failed_providers"] == [] for p in pages)


def test_a_provider_that_failed_is_named_on_every_later_page(search):
    pages = walk(search, {"collections": ["floods"], "limit": 4, "providers": ["alpha", "broken"]})
    assert len(pages) > 1
    assert [f["id"] for p in pages for f in p["features"]] == [
        i["id"] for i in sorted(ALPHA, key=lambda i: (i["properties"]["datetime"], i["id"]), reverse=True)
    ]
    for page in pages:
        assert page["partial"] is True and page["failed_providers"] == ["broken"]
    assert pages[-1]["federation"]["broken"] == {
        "status": "skipped",
        "count": 0,
        "ms": 0,
        "reason": "failed on an earlier page",
    }


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_search_no_provider_answered_is_a_503_not_an_empty_page(search, method):
    wanted = ["slow", "broken"]
    response = (
        search.post("/search/search", json={"providers": wanted})
        if method == "POST"
        else search.get("/search/search", params={"providers": ",".join(wanted)})
    )
    detail = problem(response, 503)["detail"]
    assert response.headers["retry-after"] == "5"
    assert "slow: timeout" in detail and "broken: error" in detail


def test_the_local_catalog_down_is_a_503(thesaurus, tmp_path):
    settings = SearchSettings(
        peers={"catalog": {"url": f"http://127.0.0.1:{free_port()}"}, "thesaurus": {"url": thesaurus}},
        storage_path=tmp_path,
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/search/search", params={"q": "water", "limit": 10})
    assert f"{settings.local_provider}: error" in problem(response, 503)["detail"]


def test_provider_filter_and_items_route(search):
    page = search.get("/search/search", params={"providers": "beta", "limit": 50}).json()
    assert set(page["federation"]) == {"beta"} and len(page["features"]) == len(BETA)
    assert page["numberMatched"] == len(BETA)  # one provider, which counted: exact
    items = search.get("/collections/floods/items", params={"providers": "alpha", "limit": 2}).json()
    assert [f["id"] for f in items["features"]] == ["x-lowflow", "f14"]
    cols = search.get("/collections").json()
    assert [c["id"] for c in cols["collections"]] == ["floods"]
    assert sorted(cols["collections"][0]["federation:backends"]) == ["alpha", "beta"]
    assert search.get("/queryables").json()["properties"]
    assert "https://api.stacspec.org/v1.0.0/item-search" in search.get("/conformance").json()["conformsTo"]


def test_expansion_finds_narrower_and_translated_terms(search):
    narrower = search.post("/search/search", json={"q": ["hydrologic cycle"], "providers": ["alpha", "beta"]}).json()
    assert "x-lowflow" in [f["id"] for f in narrower["features"]]
    assert narrower["expansion"]["applied"] and "low flow" in narrower["expansion"]["terms"]
    french = search.get("/search/search", params={"q": "inondation", "lang": "fr", "providers": "alpha,beta"}).json()
    assert [f["id"] for f in french["features"]] == ["x-flooding"]
    assert "flooding" in french["expansion"]["terms"]
    # every term is ORed into the providers' filters: concepts only related (rain, water level) are not asked
    assert {c["relation"] for c in french["expansion"]["concepts"]} <= {"match", "narrower"}
    off = search.get("/search/search", params={"q": "inondation", "expand": "false", "providers": "alpha,beta"}).json()
    assert off["features"] == [] and off["expansion"]["applied"] is False


def test_thesaurus_down_searches_unexpanded(catalogs, tmp_path):
    settings = SearchSettings(
        peers={"catalog": {"url": catalogs["alpha"]}, "thesaurus": {"url": f"http://127.0.0.1:{free_port()}"}},
        local_provider="alpha",
        storage_path=tmp_path,
    )
    with TestClient(create_app(settings)) as client:
        page = client.get("/search/search", params={"q": "low flow"}).json()
    assert [f["id"] for f in page["features"]] == ["x-lowflow"]
    assert page["expansion"]["applied"] is False and "unavailable" in page["expansion"]["error"]


def test_bad_inputs_are_400_problems(search):
    assert "unknown provider" in problem(search.get("/search/search", params={"providers": "nope"}), 400)["detail"]
    assert "CQL2" in problem(search.get("/search/search", params={"filter": "id = = 'x'"}), 400)["detail"]
    nonsense = {"filter": {"op": "=", "args": "nonsense"}, "filter-lang": "cql2-json"}
    problem(search.post("/search/search", json=nonsense), 400)
    assert "range" in problem(search.get("/search/search", params={"bbox": "-200,0,10,10"}), 400)["detail"]
    problem(search.get("/search/search", params={"bbox": "1,2,3"}), 400)
    assert search.get("/search/search", params={"limit": 51}).json()["context"]["limit"] == 50  # capped
    problem(search.get("/search/search", params={"limit": 0}), 400)
    problem(search.get("/search/search", params={"datetime": "yesterday"}), 400)
    problem(search.get("/search/search", params={"token": "garbage"}), 400)
    problem(search.post("/search/search", content=b"{not json", headers={"content-type": "application/json"}), 400)
    first = search.get("/search/search", params={"limit": 2, "providers": "alpha"}).json()
    token = [link for link in first["links"] if link["rel"] == "next"][0]["href"].split("token=")[1]
    assert "another search" in problem(search.get("/search/search", params={"limit": 2, "token": token}), 400)["detail"]
    problem(search.get("/collections/nope"), 404)
    for body in ("null", "[]", '"A"', "0"):
        problem(search.post("/search/search", content=body, headers={"content-type": "application/json"}), 400)
    problem(search.get("/search/collections/a%01b"), 400)  # an id with a control character never reaches a URL
    problem(search.get("/search/collections/a%01b/items"), 400)


def test_valid_cql2_is_forwarded(search):
    page = search.get("/search/search", params={"filter": "id = 'g02'", "providers": "alpha,beta"}).json()
    assert [f["id"] for f in page["features"]] == ["g02"]


def test_without_a_cql2_parser_json_filters_are_forwarded(search, monkeypatch):
    import eolake_search.stac_request

    monkeypatch.setattr(eolake_search.stac_request, "cql2", None)
    assert "cql2-json" in problem(search.get("/search/search", params={"filter": "id = 'x'"}), 400)["detail"]
    nonsense = {"filter": {"op": "nonsense", "args": []}, "filter-lang": "cql2-json", "providers": ["alpha", "beta"]}
    assert "every provider refused" in problem(search.post("/search/search", json=nonsense), 400)["detail"]
    good = search.post(
        "/search/search",
        json={
            "filter": {"op": "=", "args": [{"property": "id"}, "x-lowflow"]},
            "q": ["low flow"],
            "providers": ["alpha", "beta"],
            "expand": False,
        },
    ).json()
    assert [f["id"] for f in good["features"]] == ["x-lowflow"]


def test_eodag_runs_offline_and_searches_a_loopback_stac_api(catalogs, tmp_path, monkeypatch):
    """EODAG with our custom StacSearch provider: nothing but loopback is contacted, at start or in a search."""
    real_connect = socket.socket.connect
    contacted: list = []

    def guarded(sock, address):
        contacted.append(address)
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"test: {address} is not loopback")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    from eolake_search.providers import offline_gateway

    dag = offline_gateway(tmp_path / "eodag", [], {"alpha": catalogs["alpha"]})
    result = dag.search(provider="alpha", collection="floods", items_per_page=5)
    assert len(result) == 5
    assert all(a[0] in ("127.0.0.1", "::1") for a in contacted if isinstance(a, tuple)), contacted


def test_settings_from_the_platform_spec(monkeypatch):
    from pydantic import ValidationError

    from eolake_spec import load_stack

    env = load_stack("local").service_env("search")
    providers = json.loads(env["EOLAKE_SEARCH_PROVIDERS"])
    assert [p["name"] for p in providers][0] == "hydrology"  # enabled ones only
    assert {p["kind"] for p in providers[1:]} == {"eodag"} and not any(p["item_search"] for p in providers[1:])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = SearchSettings()
    names = {p.name: p for p in settings.all_providers()}
    assert list(names)[:2] == ["local", "hydrology"] and len(names) > 10
    assert names["hydrology"].url == "http://127.0.0.1:8080/stac" and names["hydrology"].collections
    assert names["local"].free_text == "filter" and settings.thesaurus == "http://127.0.0.1:8080/thesaurus"
    with pytest.raises(ValidationError, match="unique"):
        SearchSettings(providers=[ProviderConfig(name="local", url="http://x")])
    with pytest.raises(ValidationError, match="needs a url"):
        ProviderConfig(name="x", kind="stac")


def test_hostile_filters_and_q_are_refused_on_entry(search):
    deep = "NOT (" * 10_000 + "id = 'x'" + ")" * 10_000
    assert (
        "CQL2 filter"
        in problem(search.post("/search/search", json={"filter": deep, "filter-lang": "cql2-text"}), 400)["detail"]
    )
    deep_json = '{"op":"not","args":[' * 10_000 + '{"op":"=","args":[{"property":"id"},"x"]}' + "]}" * 10_000
    response = search.post(
        "/search/search", content=f'{{"filter": {deep_json}}}', headers={"content-type": "application/json"}
    )
    assert "nesting exceeds" in problem(response, 400)["detail"]
    terms = ",".join(f"t{i}" for i in range(3000))
    assert "q exceeds 20 terms" in problem(search.post("/search/search", json={"q": terms}), 400)["detail"]


def test_stac_features_sorting_fields_and_item_routes(search):
    page = search.get(
        "/search/search",
        params={
            "collections": "floods",
            "providers": "alpha,beta",
            "limit": 50,
            "sortby": "+id",
            "fields": "id,-geometry",
        },
    )
    assert page.headers["content-type"] == "application/geo+json"
    ids = [f["id"] for f in page.json()["features"]]
    assert ids == sorted(UNIQUE), page.json()["federation"]  # merged in the asked order across both providers
    first = page.json()["features"][0]
    assert "geometry" not in first and "properties" not in first
    assert {link["rel"] for link in first["links"]} >= {"self", "root", "parent", "collection"}
    one = search.get("/search/collections/floods/items/g02")
    assert one.headers["content-type"] == "application/geo+json" and one.json()["id"] == "g02"
    problem(search.get("/search/collections/floods/items/nope"), 404)
    hit = search.get("/search/search", params={"intersects": json.dumps(SQUARE), "providers": "alpha", "limit": 1})
    assert hit.json()["features"]
    far = {"type": "Point", "coordinates": [100, 0]}
    assert search.post("/search/search", json={"intersects": far, "providers": ["alpha"]}).json()["features"] == []
    query = search.post(
        "/search/search", json={"query": {"title": {"startsWith": "Summer"}}, "providers": ["alpha", "beta"]}
    ).json()
    assert [f["id"] for f in query["features"]] == ["x-lowflow"]
    queryables = search.get("/search/collections/floods/queryables")
    assert queryables.headers["content-type"] == "application/schema+json"
    assert queryables.json()["$id"].endswith("/search/collections/floods/queryables")


@pytest.fixture(scope="module")
def cascading(catalogs, thesaurus, tmp_path_factory):
    """The floods collection in cascade: `broken` (answers 500) first, then beta, then alpha (the local catalog)."""
    with served(proxy(catalogs["beta"], fail=True)) as broken:
        settings = SearchSettings(
            peers={"catalog": {"url": catalogs["alpha"]}, "thesaurus": {"url": thesaurus}},
            local_provider="alpha",
            root_path="/search",
            storage_path=tmp_path_factory.mktemp("cascade"),
            providers=[
                ProviderConfig(name="beta", url=catalogs["beta"], free_text="filter"),
                ProviderConfig(name="broken", url=broken),
            ],
            priorities={"floods": ["broken", "beta", "alpha"], "other": ["alpha"]},
        )
        with TestClient(create_app(settings)) as client:
            yield client


def test_a_search_without_providers_uses_the_first_that_answers_and_says_which(cascading):
    beta_floods = {i["id"] for i in BETA}
    pages = walk(cascading, {"collections": ["floods"], "limit": 4})
    assert len(pages) > 1 and sorted(f["id"] for p in pages for f in p["features"]) == sorted(beta_floods)
    for page in pages:
        assert page["cascade"] == {"providers": ["broken", "beta", "alpha"], "answered_by": "beta"}
        assert page["partial"] is False and page["failed_providers"] == []
        assert all(f["properties"]["federation:backends"] == ["beta"] for f in page["features"])
    first = pages[0]["federation"]
    assert first["broken"]["status"] == "error" and first["broken"]["answered_by"] == "beta"
    assert first["beta"]["status"] == "ok" and "answered_by" not in first["beta"]
    assert first["alpha"] == {"status": "skipped", "ms": 0.0, "count": 0, "answered_by": "beta"}  # never asked
    assert pages[1]["federation"]["broken"]["reason"] == "in cascade: beta answered"

    # Named providers: no cascade, each asked. Collections of different priorities: no cascade either.
    named = cascading.post("/search/search", json={"collections": ["floods"], "providers": ["alpha", "broken"]})
    assert "cascade" not in named.json() and named.json()["failed_providers"] == ["broken"]
    mixed = cascading.post("/search/search", json={"collections": ["floods", "other"], "limit": 50}).json()
    assert "cascade" not in mixed and set(mixed["federation"]) == {"alpha", "beta", "broken"}
