"""The kit's request bounds: the iterative checks (CQL2, JSON, geometry, q) and the middleware on a real server."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from fastapi import FastAPI, Request

from eolake_kit import ServiceSettings, install_kit
from eolake_kit.bounds import OutOfBounds, check_body, check_cql2, check_json_text, check_search
from eolake_spec import Limits
from servers import served

LIMITS = Limits(
    body_bytes=4096,
    query_bytes=1024,
    path_bytes=512,
    header_count=20,
    header_bytes=4096,
    request_seconds=1,
    statement_seconds=0.5,
    body_idle_seconds=0.5,
)


def refused(call, *args) -> OutOfBounds:
    with pytest.raises(OutOfBounds) as caught:
        call(*args)
    return caught.value


def nested_text(depth: int) -> str:
    return "NOT (" * depth + "id = 'a'" + ")" * depth


def nested_json(depth: int) -> str:
    return '{"op":"not","args":[' * depth + '{"op":"=","args":[{"property":"id"},"a"]}' + "]}" * depth


def test_deep_cql2_text_is_refused_quickly_without_parsing():
    start = time.perf_counter()
    error = refused(check_cql2, nested_text(10_000), "cql2-text", Limits())
    assert error.status == 400 and "CQL2 filter" in error.detail
    assert time.perf_counter() - start < 1  # a linear scan, not a parse: generous


def test_cql2_text_depth_and_token_bounds_are_named():
    limits = Limits(cql2_depth=4, cql2_nodes=50)
    check_cql2(nested_text(4), "cql2-text", limits)
    assert "nesting exceeds 4 levels" in refused(check_cql2, nested_text(5), "cql2-text", limits).detail
    # parentheses inside string literals are text, not nesting
    check_cql2("title = '((((((((('", "cql2-text", limits)
    many = " OR ".join(f"id = 'x{i}'" for i in range(20))
    assert "exceeds 50 tokens" in refused(check_cql2, many, "cql2-text", limits).detail


def test_deep_cql2_json_is_refused_before_json_loads_recurses():
    error = refused(check_cql2, nested_json(10_000), "cql2-json", Limits(cql2_length=10**7))
    assert error.status == 400 and "nesting exceeds 32 levels" in error.detail  # the JSON bound, before loading
    error = refused(check_cql2, json.loads(nested_json(20)), None, Limits())
    assert "CQL2 filter nesting exceeds 16 levels" in error.detail
    check_cql2(json.loads(nested_json(15)), None, Limits())


def test_json_body_bounds():
    limits = Limits(json_nodes=100)
    assert "nesting exceeds" in refused(check_json_text, "[" * 100_000 + "]" * 100_000, limits).detail
    assert "more than 100 values" in refused(check_json_text, json.dumps(list(range(200))), limits).detail
    assert check_json_text('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', limits) == {"a": "[" * 40}
    assert "not valid JSON" in refused(check_json_text, "{", limits).detail


def test_a_geometry_type_that_is_not_a_name_is_left_to_the_route():
    """schemathesis sent `"type": {}` in an item's geometry: the bound check must not crash on it (a 500)."""
    for kind in ({}, [], None, 3):
        check_body({"type": "Feature", "geometry": {"type": kind, "coordinates": []}}, Limits())
        check_search({"intersects": {"type": kind, "coordinates": [1, 2]}}, Limits())


def test_geometry_positions_and_coordinates():
    ring = [[i / 1000, 0.0] for i in range(20_001)]
    polygon = {"type": "Polygon", "coordinates": [ring]}
    assert "exceeds 10000 positions" in refused(check_search, {"intersects": polygon}, Limits()).detail
    assert "exceeds 10000 positions" in refused(check_body, {"type": "Feature", "geometry": polygon}, Limits()).detail
    bad = {"type": "Point", "coordinates": [200, 0]}
    assert "longitude/latitude" in refused(check_search, {"intersects": bad}, Limits()).detail
    assert "bbox out of range" in refused(check_search, {"bbox": "0,0,190,10"}, Limits()).detail
    check_search({"intersects": {"type": "Point", "coordinates": [1.4, 43.6]}, "bbox": [0, 0, 1, 1]}, Limits())


def test_q_terms_and_length():
    q = ",".join(f"term{i}" for i in range(3000))
    assert "q exceeds 20 terms" in refused(check_search, {"q": q}, Limits()).detail
    assert "characters" in refused(check_search, {"q": ["x" * 2000]}, Limits()).detail


def test_nested_search_in_a_body_is_checked():
    order = {"search": {"filter": nested_text(50), "filter-lang": "cql2-text"}}
    assert "nesting" in refused(check_body, order, Limits()).detail
    assert "bbox out of range" in refused(check_body, {"bbox": [0, 0, 200, 1]}, Limits()).detail
    check_body({"type": "Feature", "bbox": [500000, 4000000, 600000, 4100000], "geometry": None}, Limits())


# --- the middleware on a real server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service():
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"bytes": len(await request.body())}

    @app.post("/swallow")
    async def swallow(request: Request) -> dict:
        try:
            await request.body()
        except Exception:  # an app that makes its own answer of a failed read: the bound's answer still wins
            return {"swallowed": True}
        return {"swallowed": False}

    @app.get("/slow")
    async def slow() -> dict:
        await asyncio.sleep(30)
        return {}

    @app.get("/search")
    async def search() -> dict:
        return {"ok": True}

    install_kit(app, ServiceSettings(service_name="bounded", limits=LIMITS))
    with served(app) as url:
        yield url


def assert_problem(response: httpx.Response, status: int, bound: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert bound in response.json()["detail"]


def chunks(total: int, size: int = 1024):
    for _ in range(total // size):
        yield b"x" * size


def test_body_within_bound_passes(service):
    body = b'{"x": "' + b"x" * (4096 - 9) + b'"}'
    assert len(body) == 4096 and httpx.post(service + "/echo", content=body).json() == {"bytes": 4096}


def test_body_over_bound_by_length_and_chunked(service):
    assert_problem(httpx.post(service + "/echo", content=b"x" * 5000), 413, "exceeds 4096 bytes")
    response = httpx.post(service + "/echo", content=chunks(10 * 1024 * 1024))  # chunked: no Content-Length
    assert_problem(response, 413, "request body exceeds 4096 bytes")
    assert_problem(httpx.post(service + "/swallow", content=chunks(64 * 1024)), 413, "exceeds 4096 bytes")


def test_stalled_body_gets_408(service):
    async def trickle():
        yield b"x"
        await asyncio.sleep(3)
        yield b"x"

    async def send() -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.post(service + "/echo", content=trickle())

    assert_problem(asyncio.run(send()), 408, "stalled for more than 0.5 s")


def test_a_byte_a_second_body_gets_408(service):
    async def crawl():
        for _ in range(15):
            yield b"x"
            await asyncio.sleep(0.2)  # never idle past body_idle_seconds, but 5 bytes/s

    async def send() -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.post(service + "/echo", content=crawl())

    assert_problem(asyncio.run(send()), 408, "slower than 1024 bytes/s")


def test_path_query_and_headers(service):
    assert_problem(httpx.get(service + "/" + "a" * 600), 414, "path exceeds 512 bytes")
    assert_problem(httpx.get(service + "/search", params={"q": "x" * 2000}), 414, "query string exceeds 1024")
    many = {f"x-h{i}": "v" for i in range(30)}
    assert_problem(httpx.get(service + "/search", headers=many), 431, "more than 20 header fields")
    assert_problem(httpx.get(service + "/search", headers={"x-big": "v" * 5000}), 431, "headers exceed 4096")


def test_time_budget_answers_504(service):
    assert_problem(httpx.get(service + "/slow", timeout=10), 504, "time budget of 1 s")


def test_search_parameters_are_checked_on_entry(service):
    assert_problem(httpx.get(service + "/search", params={"filter": nested_text(20)}), 400, "nesting exceeds 16")
    deep = {"filter": json.loads(nested_json(3)), "x": json.loads("[" * 40 + "]" * 40)}
    assert_problem(httpx.post(service + "/echo", json=deep), 400, "request body nesting exceeds 32")
    assert httpx.get(service + "/search", params={"filter": nested_text(3)}).json() == {"ok": True}


def test_a_limit_above_page_size_is_capped_not_refused():
    from eolake_kit.bounds import cap_body_limit, cap_limit

    limits = Limits(page_size=100)
    scope = {"query_string": b"limit=1000000000000&collections=a&xlimit=5000", "headers": []}
    cap_limit(scope, limits)
    assert scope["query_string"] == b"limit=100&collections=a&xlimit=5000"
    scope = {"headers": [(b"content-length", b"21")]}
    raw = cap_body_limit({"limit": 10**12}, b'{"limit": 1000000000000}', scope, limits)
    assert json.loads(raw) == {"limit": 100} and scope["headers"] == [(b"content-length", str(len(raw)).encode())]
    assert cap_body_limit({"limit": 5}, b'{"limit": 5}', scope, limits) == b'{"limit": 5}'


def test_json_bodies_are_inspected_whatever_their_type(service):
    deep = "[" * 100 + "]" * 100
    for content_type in ("text/plain", None):
        headers = {"content-type": content_type} if content_type else {}
        assert_problem(httpx.post(service + "/echo", content=deep, headers=headers), 400, "nesting exceeds 32")
    # Past the bounds, what is not JSON is the JSON-body check's to refuse (415), not a bound's.
    not_json = httpx.post(service + "/echo", content=b"{not json", headers={"content-type": "text/plain"})
    assert not_json.status_code == 415 and "bytes" not in not_json.json()["detail"]
