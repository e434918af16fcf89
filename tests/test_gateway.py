"""The local gateway: one base URL, a prefix per service, paths and bodies forwarded, the Host header not."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from eolake.embedded.gateway import create_gateway
from eolake.embedded.postgres import free_port
from eolake_kit.server import connection_options
from eolake_spec import Limits
from servers import served, wait_until

PUBLIC = "http://127.0.0.1:8080"


def echo_app(name: str) -> FastAPI:
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE"])
    async def echo(path: str, request: Request) -> dict:
        return {
            "service": name,
            "path": request.url.path,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.url.query,
            "host": request.headers.get("host"),
            "body": (await request.body()).decode(),
            "forwarded_for": request.headers.get("x-forwarded-for"),
            "request_id": request.headers.get("x-request-id"),
            "traceparent": request.headers.get("traceparent"),
        }

    return app


@pytest.fixture(scope="module")
def gateway():
    with served(echo_app("catalog")) as catalog, served(echo_app("web")) as web:
        routes = {"/stac": catalog, "/": web, "/tiles": f"http://127.0.0.1:{free_port()}"}
        limits = Limits(body_bytes=1024, request_seconds=5, statement_seconds=1)
        with served(create_gateway(routes, public_url=PUBLIC, timeout=5, limits=limits), proxy_headers=False) as url:
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
    chunked = httpx.post(gateway + "/stac/search", content=(b"x" * 512 for _ in range(100)))
    assert chunked.status_code == 413 and "exceeds 1024 bytes" in chunked.json()["detail"]


@pytest.mark.parametrize("path", ["/stac/x%1A", "/stac/a%0Ab", "/x%0A/related"])  # a line break matches no route
def test_control_characters_in_the_path_are_400(gateway, path):
    response = httpx.get(gateway + path)
    assert response.status_code == 400 and response.headers["content-type"] == "application/problem+json"
    assert "control character" in response.json()["detail"]
    assert response.headers["x-content-type-options"] == "nosniff"  # the gateway's own answers are hardened too
    assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_the_raw_path_is_forwarded(gateway):
    answer = httpx.get(gateway + "/stac/collections/a%2Fb/items?x=%2F").json()
    assert answer["path"] == "/stac/collections/a/b/items"  # decoded by the service, once
    assert answer["raw_path"] == "/stac/collections/a%2Fb/items"
    assert answer["query"] == "x=%2F"
    echo = httpx.get(gateway + "/stac/raw%2Fpath")
    assert echo.status_code == 200 and echo.json()["service"] == "catalog"


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


@pytest.fixture(scope="module")
def strict_gateway():
    limits = Limits(header_seconds=1, body_idle_seconds=0.5, request_seconds=5, statement_seconds=1, connections=50)
    with served(echo_app("catalog")) as catalog:
        app = create_gateway({"/stac": catalog}, public_url=PUBLIC, timeout=5, limits=limits)
        with served(app, **connection_options(limits)) as url:
            yield url


def trickle(url: str, slowly: bytes, pause: float, sockets: int = 8, at_once: bytes = b"") -> list[bytes]:
    """Open `sockets` connections sending `at_once`, then `slowly` a byte at a time; what each got back when its
    server closed it (a closed connection reads b"" or a reset). Every socket gives up after 10 s."""
    host, port = url.removeprefix("http://").split(":")
    conns = [socket.create_connection((host, int(port)), timeout=10) for _ in range(sockets)]
    for conn in conns:
        conn.sendall(at_once)
    answers: list[bytes | None] = [None] * sockets
    deadline = time.monotonic() + 10
    for byte in slowly:
        for i, conn in enumerate(conns):
            if answers[i] is None:
                try:
                    conn.sendall(bytes([byte]))
                    conn.setblocking(False)
                    try:
                        answers[i] = conn.recv(4096) or b"closed"
                    except BlockingIOError:
                        pass
                    conn.setblocking(True)
                except OSError:
                    answers[i] = b"reset"
        if all(a is not None for a in answers) or time.monotonic() > deadline:
            break
        time.sleep(pause)
    for conn in conns:
        conn.close()
    return [a or b"still open" for a in answers]


def test_slow_headers_are_cut_at_the_header_deadline(strict_gateway):
    head = b"GET /stac/x HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Pad-%d: y\r\n" % i for i in range(40)) + b"\r\n"
    answers = trickle(strict_gateway, head, pause=0.1)
    assert all(a.startswith(b"HTTP/1.1 408") or a in (b"closed", b"reset") for a in answers), answers
    assert httpx.get(strict_gateway + "/stac/x").status_code == 200  # others are served meanwhile


def test_slow_bodies_get_408(strict_gateway):
    head = b"POST /stac/x HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n"
    answers = trickle(strict_gateway, b"x" * 200, pause=1, sockets=4, at_once=head)
    assert all(b" 408 " in a and b"stalled" in a for a in answers), answers


def test_open_connections_are_bounded():
    limits = Limits(connections=4, request_seconds=5, statement_seconds=1)
    with served(echo_app("catalog")) as catalog:
        app = create_gateway({"/stac": catalog}, public_url=PUBLIC, timeout=5, limits=limits)
        with served(app, **connection_options(limits)) as url:
            host, port = url.removeprefix("http://").split(":")
            held = [socket.create_connection((host, int(port))) for _ in range(4)]
            try:
                for conn in held:
                    conn.sendall(b"GET /stac/x HTTP/1.1\r\n")  # heads left open
                assert httpx.get(url + "/stac/x").status_code == 503
            finally:
                for conn in held:
                    conn.close()
            assert wait_until(lambda: httpx.get(url + "/stac/x").status_code == 200, timeout=10)


def naming_app(named: dict[str, str]) -> FastAPI:
    """An upstream that answers GET /dl/files/<name> with the file it names (X-Sendfile) when the gateway asks for
    that, and says what it was asked."""
    app = FastAPI()

    @app.get("/dl/files/{name}")  # the gateway forwards paths unchanged
    async def file(name: str, request: Request) -> Response:
        asked = request.headers.get("x-sendfile-type", "")
        headers = {"X-Asked": asked, "ETag": '"v1"'}
        if asked != "X-Sendfile":
            return Response(b"inline", headers=headers)
        path, _, span = named[name].partition("#")
        if span:
            return Response(status_code=206, headers=headers | {"X-Sendfile": path, "Content-Range": span})
        return Response(headers=headers | {"X-Sendfile": path})

    return app


def test_the_gateway_sends_the_files_a_service_names_within_its_storage_only(tmp_path):
    storage, outside = tmp_path / "storage", tmp_path / "outside.bin"
    storage.mkdir()
    (storage / "a.bin").write_bytes(bytes(range(256)) * 40)
    outside.write_bytes(b"secret")
    named = {
        "whole": str(storage / "a.bin"),
        "part": f"{storage / 'a.bin'}#bytes 10-19/10240",
        "beyond": f"{storage / 'a.bin'}#bytes 10-99999/10240",
        "escape": str(storage / ".." / "outside.bin"),
        "gone": str(storage / "expired.bin"),
    }
    with served(naming_app(named)) as upstream:
        plain = create_gateway({"/dl": upstream}, public_url=PUBLIC)
        sends = create_gateway({"/dl": upstream}, public_url=PUBLIC, sendfile_roots=[storage])
        with (
            served(plain, proxy_headers=False) as plain_url,
            served(sends, proxy_headers=False, **connection_options(Limits(), zero_copy=True)) as url,
        ):
            # a client cannot ask a service to name its files: the header is the gateway's to set
            spoofed = httpx.get(plain_url + "/dl/files/whole", headers={"X-Sendfile-Type": "X-Sendfile"})
            assert spoofed.content == b"inline" and spoofed.headers["x-asked"] == ""
            whole = httpx.get(url + "/dl/files/whole")
            assert whole.content == (storage / "a.bin").read_bytes() and whole.headers["etag"] == '"v1"'
            assert whole.headers["content-length"] == "10240" and "x-sendfile" not in whole.headers
            part = httpx.get(url + "/dl/files/part")
            assert (part.status_code, part.content) == (206, bytes(range(10, 20)))
            assert part.headers["content-range"] == "bytes 10-19/10240"
            for name in ("beyond", "escape", "gone"):
                refused = httpx.get(url + f"/dl/files/{name}")
                assert refused.status_code == 502 and refused.headers["content-type"] == "application/problem+json"
                assert b"secret" not in refused.content and "x-sendfile" not in refused.headers, name
