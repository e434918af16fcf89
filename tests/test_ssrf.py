"""No caller-controlled URL is ever fetched: signed page tokens, provider links checked against the provider's root,
one outbound client that reaches only configured destinations, item references validated and quoted.

A loopback canary server counts every request it receives; each attack below must leave it at 0.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import zlib

import pytest
from eolake_downloads.catalog import Catalog
from eolake_downloads.orders import OrderRequest
from eolake_downloads.settings import DownloadsSettings
from eolake_search.app import create_app
from eolake_search.federation import BadToken, decode_token, encode_token
from eolake_search.settings import ProviderConfig, SearchSettings
from fastapi.testclient import TestClient
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from eolake_kit.outbound import ANSWER_BYTES, AnswerTooLarge, DestinationRefused, Egress, async_client
from eolake_kit.settings import Peer, below
from servers import served

KEY = b"k" * 32


class Canary:
    def __init__(self):
        self.hits: list[str] = []

    def app(self) -> Starlette:
        async def anything(request: Request):
            self.hits.append(request.url.path)
            return JSONResponse({"type": "FeatureCollection", "features": [{"id": "stolen"}], "links": []})

        return Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST"])])


@pytest.fixture(scope="module")
def canary():
    spy = Canary()
    with served(spy.app()) as url:
        yield spy, url


def feature(iid: str, day: int) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": iid,
        "collection": "c",
        "geometry": None,
        "links": [],
        "assets": {},
        "properties": {"datetime": f"2023-01-{day:02d}T00:00:00Z"},
    }


def provider_app(next_href: str | None = None, redirect: str | None = None, status: int = 200) -> Starlette:
    """A STAC API whose search answers one item and a next link of our choosing (a hostile provider)."""

    async def search(request: Request):
        if redirect:
            return RedirectResponse(redirect, status_code=302)
        if status != 200:
            return JSONResponse({"detail": "SECRET-UPSTREAM-BODY"}, status_code=status)
        links = [{"rel": "next", "href": next_href, "method": "GET"}] if next_href else []
        return JSONResponse({"type": "FeatureCollection", "features": [feature("p1", 2)], "links": links})

    async def conformance(request: Request):
        return JSONResponse({"conformsTo": []})

    return Starlette(
        routes=[Route("/stac/search", search, methods=["GET", "POST"]), Route("/stac/conformance", conformance)]
    )


def search_client(local: str, providers: list[ProviderConfig] = ()) -> TestClient:
    settings = SearchSettings(
        peers={"catalog": {"url": local}, "thesaurus": {"url": local}},
        token_key="t" * 32,
        providers=list(providers),
        root_path="/search",
    )
    return TestClient(create_app(settings))


def test_token_round_trip_and_every_forgery_refused():
    state = {"q": "abc", "p": {"local": {"c": {"href": "/search?token=next:x"}, "s": 3}}}
    token = encode_token(state, KEY)
    assert decode_token(token, KEY) == state
    payload, mac = token.split(".")
    unsigned = base64.urlsafe_b64encode(zlib.compress(json.dumps(state).encode())).decode().rstrip("=")
    forged = [
        "",
        "abc",
        unsigned,  # the old unsigned format
        f"{payload}.{'A' * len(mac)}",  # a made-up signature
        f"{payload[:-2]}xx.{mac}",  # payload altered
        encode_token(state, b"another key of thirty-two bytes!"),
        token + "A" * 20_000,  # far too long
    ]
    for bad in forged:
        with pytest.raises(BadToken):
            decode_token(bad, KEY)
    with pytest.raises(BadToken):  # signed, but a decompression bomb: refused before it is inflated whole
        decode_token(encode_token({"q": "x" * 5_000_000, "p": {}}, KEY), KEY)


@pytest.mark.parametrize(
    "url, ok",
    [
        ("http://127.0.0.1:8081/stac/search", True),
        ("http://127.0.0.1:8081/stac", True),
        ("http://127.0.0.1:8081/stacx/search", False),  # a sibling prefix
        ("http://127.0.0.1:8081/stac/../-/quit", False),  # normalised to /-/quit
        ("http://127.0.0.1:8082/stac/search", False),  # another port
        ("https://127.0.0.1:8081/stac/search", False),  # another scheme
        ("http://localhost:8081/stac/search", False),  # another host name
        ("http://user@127.0.0.1:8081/stac/search", False),  # credentials
        ("http://169.254.169.254/latest/meta-data/", False),
        ("https://provider.example.org/v1/search", True),
        ("https://provider.example.org:443/v1/collections", True),
        ("http://provider.example.org/v1/search", False),
    ],
)
def test_egress_admits_only_configured_destinations(url, ok):
    egress = Egress(["http://127.0.0.1:8081/stac", "https://provider.example.org/v1/"])
    assert egress.admits(url) is ok


def test_below_and_peer_rebase_only_what_is_below():
    assert below("http://h:1/stac/search?token=a", "http://h:1/stac") == "/search?token=a"
    for href in (
        "http://h:1/stacx",
        "http://h:2/stac/x",
        "https://h:1/stac/x",
        "http://h:1/stac/%2e%2e/x",
        "http://h:1/stac/a%2Fb",
        "http://u@h:1/stac/x",
        "http://h:1/",
        "not a url",
        "/stac/x",
    ):
        assert below(href, "http://h:1/stac") is None, href
    peer = Peer(url="http://127.0.0.1:9/stac", public_url="https://eolake.example.org/stac")
    assert peer.internal("https://eolake.example.org/stac/search?x=1") == "http://127.0.0.1:9/stac/search?x=1"
    assert peer.internal("https://eolake.example.org/tiles/x") is None


def test_outbound_client_refuses_redirects_elsewhere(canary):
    spy, canary_url = canary

    async def calls(provider: str) -> None:
        async with async_client([provider + "/stac"], follow_redirects=True) as client:
            with pytest.raises(DestinationRefused):
                await client.post(provider + "/stac/search", json={})
            with pytest.raises(DestinationRefused):
                await client.get(canary_url + "/api/v2/silences")

    with served(provider_app(redirect=canary_url + "/-/quit")) as provider:
        asyncio.run(calls(provider))
    assert spy.hits == []


def test_forged_page_tokens_fetch_nothing(canary):
    spy, canary_url = canary
    state = {"q": "x", "p": {"local": {"c": {"href": canary_url + "/-/quit"}, "s": 0}}}
    unsigned = base64.urlsafe_b64encode(zlib.compress(json.dumps(state).encode())).decode().rstrip("=")
    with served(provider_app()) as local, search_client(local + "/stac") as client:
        for token in (unsigned, encode_token(state, b"guessed key, but not the right 1")):
            for answer in (
                client.get("/search/search", params={"token": token}),
                client.post("/search/search", json={"token": token}),
            ):
                assert answer.status_code == 400
                assert answer.headers["content-type"].startswith("application/problem+json")
                assert "not valid" in answer.json()["detail"]
    assert spy.hits == []


@pytest.mark.parametrize("target", ["/-/quit", "/api/v2/silences"])
def test_a_provider_next_link_elsewhere_ends_its_stream(canary, target):
    spy, canary_url = canary
    with served(provider_app(next_href=canary_url + target)) as local, search_client(local + "/stac") as client:
        answer = client.get("/search/search")
    assert answer.status_code == 503, answer.text  # its only provider failed: not an empty page
    assert "local: error" in answer.json()["detail"] and "outside its root" in answer.json()["detail"]
    assert spy.hits == []


def test_provider_redirects_and_error_bodies_do_not_leak(canary):
    spy, canary_url = canary
    with (
        served(provider_app()) as local,
        served(provider_app(redirect=canary_url + "/x")) as redirecting,
        served(provider_app(status=500)) as failing,
    ):
        providers = [
            ProviderConfig(name="redirecting", url=redirecting + "/stac"),
            ProviderConfig(name="failing", url=failing + "/stac"),
        ]
        with search_client(local + "/stac", providers) as client:
            answer = client.get("/search/search")
    assert answer.status_code == 200
    federation = answer.json()["federation"]
    assert federation["redirecting"] == {
        **federation["redirecting"],
        "status": "error",
        "error": "refused: not a configured destination",
    }
    assert federation["failing"]["error"] == "the provider answered HTTP 500"
    assert "SECRET-UPSTREAM-BODY" not in answer.text and canary_url not in answer.text
    assert spy.hits == []


def endless_answers(size: int) -> Starlette:
    """Answers of `size` bytes: streamed without a length, declared, and gzip-coded (a small bomb)."""

    def spaces():
        for _ in range(size // 65536 + 1):
            yield b" " * 65536

    async def streamed(request: Request):
        return StreamingResponse(spaces(), media_type="application/json")

    async def declared(request: Request):
        return Response(b"{}" + b" " * size, media_type="application/json")

    async def coded(request: Request):
        body = gzip.compress(b"{" + b" " * size + b"}")
        return Response(body, media_type="application/json", headers={"Content-Encoding": "gzip"})

    return Starlette(
        routes=[
            Route("/streamed", streamed),
            Route("/search", streamed, methods=["POST"]),  # as a provider's item search
            Route("/declared", declared),
            Route("/coded", coded),
        ]
    )


def test_answers_past_the_bound_are_refused_as_they_arrive():
    async def calls(base: str) -> None:
        async with async_client([base], max_answer_bytes=100_000) as client:
            for path in ("/streamed", "/declared", "/coded"):
                with pytest.raises(AnswerTooLarge):
                    await client.get(base + path)
        async with async_client([base], max_answer_bytes=None) as unbounded:  # file transfers
            assert len((await unbounded.get(base + "/streamed")).content) > 100_000

    with served(endless_answers(200_000)) as base:
        asyncio.run(calls(base))


def test_a_provider_answering_without_end_is_a_failed_provider_not_a_full_memory():
    with served(provider_app()) as local, served(endless_answers(ANSWER_BYTES)) as endless:
        endless_provider = ProviderConfig(name="endless", url=endless)
        with search_client(local + "/stac", [endless_provider]) as client:
            answer = client.get("/search/search", params={"providers": "local,endless"})
    assert answer.status_code == 200, answer.text
    federation = answer.json()["federation"]
    assert federation["local"]["status"] == "ok"
    assert federation["endless"]["error"] == f"refused: the answer exceeds {ANSWER_BYTES} bytes"
    assert endless not in answer.text


def test_next_links_of_a_signed_token_follow_the_provider_internally():
    """The catalog's links carry its public URL; the search follows them at its internal address."""
    public = "https://eolake.example.org/stac"
    seen: list[str] = []

    async def search(request: Request):
        seen.append(str(request.url))
        if request.query_params.get("token") == "p2":
            return JSONResponse({"type": "FeatureCollection", "features": [feature("b", 1)], "links": []})
        return JSONResponse(
            {
                "type": "FeatureCollection",
                "features": [feature("a", 2)],
                "links": [{"rel": "next", "href": f"{public}/search?token=p2", "method": "GET"}],
            }
        )

    app = Starlette(routes=[Route("/stac/search", search, methods=["GET", "POST"])])
    with served(app) as local:
        settings = SearchSettings(
            peers={"catalog": {"url": local + "/stac", "public_url": public}}, token_key="t" * 32, root_path="/search"
        )
        with TestClient(create_app(settings)) as client:
            first = client.get("/search/search", params={"limit": 1}).json()
            token = next(link for link in first["links"] if link["rel"] == "next")["href"].split("token=")[1]
            second = client.get("/search/search", params={"limit": 1, "token": token}).json()
    assert [f["id"] for f in first["features"] + second["features"]] == ["a", "b"]
    assert seen[-1].startswith(local + "/stac/search?") and "token=p2" in seen[-1]


@pytest.mark.parametrize(
    "ref",
    [
        {"collection": "garonne-wse/items/garonne-wse-2023-12-12?", "id": "x"},
        {"collection": "c", "id": "../../x"},
        {"collection": "c", "id": ".."},
        {"collection": "c", "id": "x\x1ay"},
        {"collection": "", "id": "x"},
        {"collection": "c", "id": "x" * 257},
    ],
)
def test_order_item_references_are_validated(ref):
    with pytest.raises(ValidationError):
        OrderRequest(items=[ref])


def test_item_references_are_quoted_into_the_catalog_url(tmp_path):
    paths: list[str] = []

    async def item(request: Request):
        paths.append(request.scope["raw_path"].decode())
        return JSONResponse({"id": "x"})

    app = Starlette(routes=[Route("/stac/collections/{c}/items/{i}", item)])
    with served(app) as catalog:
        settings = DownloadsSettings(peers={"catalog": {"url": catalog + "/stac"}}, storage_path=tmp_path)
        client = Catalog(settings)

        async def fetch() -> None:
            try:
                await client.item("a b", "x?y#z")
            finally:
                await client.client.aclose()

        asyncio.run(fetch())
    assert paths == ["/stac/collections/a%20b/items/x%3Fy%23z"]
