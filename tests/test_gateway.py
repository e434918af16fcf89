"""The local gateway: one base URL, a prefix per service, paths and bodies forwarded, the Host header not."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request

from eolake.embedded.gateway import create_gateway
from eolake.embedded.postgres import free_port
from servers import served

PUBLIC = "http://127.0.0.1:8080"


def echo_app(name: str) -> FastAPI:
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE"])
    async def echo(path: str, request: Request) -> dict:
        return {"service": name, "path": request.url.path, "query": request.url.query,
                "host": request.headers.get("host"), "body": (await request.body()).decode(),
                "forwarded_for": request.headers.get("x-forwarded-for"),
                "request_id": request.headers.get("x-request-id"),
                "traceparent": request.headers.get("traceparent")}

    return app


@pytest.fixture(scope="module")
def gateway():
    with served(echo_app("catalog")) as catalog, served(echo_app("web")) as web:
        routes = {"/stac": catalog, "/": web, "/tiles": f"http://127.0.0.1:{free_port()}"}
        with served(create_gateway(routes, public_url=PUBLIC, timeout=5, max_body_bytes=1000),
                    proxy_headers=False) as url:
            yield url


def test_prefix_routing_keeps_path_and_query(gateway):
    response = httpx.get(gateway + "/stac/collections/x?limit=3", headers={"X-Request-ID": "r-1"})
    answer = response.json()
    assert answer["service"] == "catalog" and answer["path"] == "/stac/collections/x"
    assert answer["query"] == "limit=3" and answer["request_id"] == "r-1"
    assert response.headers.get_list("x-request-id") == ["r-1"]
    assert httpx.get(gateway + "/stac").json()["service"] == "catalog"


def test_request_id_and_trace_context_reach_the_service(gateway):
    trace = "0af7651916cd43dd8448eb211c80319c"
    response = httpx.get(gateway + "/stac/x", headers={"traceparent": f"00-{trace}-b7ad6b7169203331-01"})
    answer = response.json()
    assert answer["request_id"] == response.headers["x-request-id"] and len(answer["request_id"]) == 32
    version, trace_id, parent, flags = answer["traceparent"].split("-")
    assert trace_id == trace and parent != "b7ad6b7169203331", "the gateway's own span is the parent"


def test_gateway_metrics_are_labelled_by_service_prefix(gateway):
    httpx.get(gateway + "/stac/collections/abc")
    text = httpx.get(gateway + "/-/metrics").text
    assert 'route="/stac/{path:path}",service="gateway",status_class="2xx"' in text
    assert "abc" not in text


def test_longest_prefix_wins_and_root_goes_to_web(gateway):
    assert httpx.get(gateway + "/items").json()["service"] == "web"
    assert httpx.get(gateway + "/stacked").json()["service"] == "web"


def test_host_header_is_not_forwarded(gateway):
    answer = httpx.get(gateway + "/stac/", headers={"Host": "evil.example.com"}).json()
    assert answer["host"] != "evil.example.com"
    assert answer["forwarded_for"] == "127.0.0.1"


def test_the_client_address_is_the_one_the_gateway_saw(gateway):
    answer = httpx.get(gateway + "/stac/", headers={"X-Forwarded-For": "192.0.2.99"}).json()
    assert answer["forwarded_for"] == "127.0.0.1"


def test_bodies_are_forwarded(gateway):
    answer = httpx.post(gateway + "/stac/search", json={"limit": 2}).json()
    assert answer["body"] == '{"limit":2}'


def test_body_over_limit_is_413(gateway):
    response = httpx.post(gateway + "/stac/search", content=b"x" * 2000)
    assert response.status_code == 413 and response.headers["content-type"] == "application/problem+json"


def test_upstream_down_is_502_problem(gateway):
    response = httpx.get(gateway + "/tiles/tilejson.json")
    assert response.status_code == 502
    assert response.json()["detail"] == "the service at /tiles is unavailable"


def test_no_route_without_web_view():
    with served(echo_app("catalog")) as catalog, served(create_gateway({"/stac": catalog}, public_url=PUBLIC)) as url:
        missing = httpx.get(url + "/nope")
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["request_id"] == missing.headers["x-request-id"]
        assert httpx.get(url + "/").json()["services"] == {"/stac": PUBLIC + "/stac"}
        assert httpx.get(url + "/-/healthz").status_code == 200
