"""The gateway in front of several instances of a service: in turn, around a refused or dropped connection (reads
only, for the latter), and following the routes file the supervisor rewrites (a drained instance gets nothing)."""

from __future__ import annotations

import json
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from test_gateway import PUBLIC, echo_app

from eolake.embedded.gateway import create_gateway
from eolake.embedded.postgres import free_port
from eolake.embedded.supervisor import Child, gateway_routes
from eolake_spec import load_stack
from eolake_spec.platform import Supervision
from servers import served, wait_until

READS = {"/stac": ["/search"]}


@contextmanager
def dropping_server():
    """Accepts a connection, reads the request and closes without an answer: an instance dying mid-request."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


@pytest.fixture(scope="module")
def instances():
    with served(echo_app("a")) as a, served(echo_app("b")) as b:
        yield a, b


def test_requests_go_to_each_instance_in_turn(instances):
    with served(create_gateway({"/stac": list(instances)}, public_url=PUBLIC, timeout=5)) as url:
        seen = [httpx.get(url + "/stac/collections").json()["service"] for _ in range(6)]
    assert seen.count("a") == seen.count("b") == 3


def test_a_refused_connection_goes_to_the_next_instance_whatever_the_method(instances):
    gone = f"http://127.0.0.1:{free_port()}"
    app = create_gateway({"/stac": [gone, instances[0]]}, public_url=PUBLIC, timeout=5, posted_reads=READS)
    with served(app) as url:
        answers = [
            httpx.get(url + "/stac/collections"),
            httpx.post(url + "/stac/search", json={"limit": 1}),
            httpx.post(url + "/stac/collections/c/items", content=b'{"id": "x"}'),
            httpx.delete(url + "/stac/collections/c"),
        ] * 2
    assert [a.status_code for a in answers] == [200] * len(answers)
    assert answers[2].json()["body"] == '{"id": "x"}', "the body reached the instance whole"


def test_a_dropped_connection_is_retried_for_reads_only(instances):
    with dropping_server() as dropping:
        for method, path, body in (("GET", "/stac/collections", None), ("POST", "/stac/search", b'{"limit":1}')):
            app = create_gateway({"/stac": [dropping, instances[1]]}, public_url=PUBLIC, timeout=5, posted_reads=READS)
            with served(app) as url:  # a new gateway: the dropping instance comes first
                answer = httpx.request(method, url + path, content=body)
            assert answer.json()["service"] == "b" and answer.json()["body"] == (body or b"").decode()
        app = create_gateway({"/stac": [dropping, instances[1]]}, public_url=PUBLIC, timeout=5, posted_reads=READS)
        with served(app) as url:
            write = httpx.post(url + "/stac/collections/c/items", json={"id": "x"})
    assert write.status_code == 502, "a write whose connection dropped was sent again (it may have been applied)"
    assert write.headers["content-type"] == "application/problem+json"


def test_the_routes_file_is_followed(instances, tmp_path):
    a, b = instances
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"/stac": [a]}))
    app = create_gateway({"/stac": [a]}, public_url=PUBLIC, timeout=5, routes_file=routes)
    with served(app) as url, httpx.Client(base_url=url) as client:
        assert client.get("/stac/x").json()["service"] == "a"
        routes.write_text(json.dumps({"/stac": [b]}))  # a drained: no new request reaches it
        assert wait_until(lambda: client.get("/stac/x").json()["service"] == "b", 5)
        assert {client.get("/stac/x").json()["service"] for _ in range(5)} == {"b"}
        assert client.get("/-/readyz").status_code == 200

        routes.write_text(json.dumps({"/stac": []}))  # every instance out (restarting)
        assert wait_until(lambda: client.get("/stac/x").status_code == 503, 5)
        unavailable = client.get("/stac/x")
        assert unavailable.headers["retry-after"] == "2"
        assert unavailable.json()["detail"] == "no instance of the service at /stac is ready"
        assert client.get("/-/readyz").status_code == 503

        routes.write_text(json.dumps({"/stac": [a, b]}))
        assert wait_until(lambda: client.get("/stac/x").status_code == 200, 5)


def catalog_instance(port: int, state: str = "serving", failures: int = 0) -> Child:
    child = Child("catalog", [], {}, Path("/dev/null"), f"http://127.0.0.1:{port}", service="catalog", state=state)
    child.failures = failures
    return child


def test_an_instance_that_failed_its_liveness_probe_gets_no_new_request_while_another_answers():
    platform = load_stack("local")
    a, b, c = catalog_instance(1), catalog_instance(2, failures=1), catalog_instance(3, state="starting")
    assert gateway_routes(platform, [a, b, c])["/stac"] == [a.upstream]
    b.failures = 0  # it answered again
    assert gateway_routes(platform, [a, b, c])["/stac"] == [a.upstream, b.upstream]
    a.failures, b.failures = 2, 1  # none answers (a machine too busy, say): better slow than none
    assert gateway_routes(platform, [a, b, c])["/stac"] == [a.upstream, b.upstream]
    a.state = "down"  # killed as hung
    assert gateway_routes(platform, [a, b, c])["/stac"] == [b.upstream]


@pytest.mark.parametrize(
    "bad",
    [
        {"liveness_failures": 0},
        {"liveness_period_seconds": 0.1},
        {"liveness_timeout_seconds": 0},
        {"liveness_probe": 1},
    ],
)
def test_impossible_supervision_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        Supervision(**bad)


def test_the_embedded_gateway_sends_staged_files_only_with_local_storage(tmp_path):
    from eolake.embedded.environment import service_env
    from eolake.embedded.state import StateDir
    from eolake.embedded.supervisor import gateway_child

    local, state = load_stack("local"), StateDir(tmp_path / "state")
    gateway = gateway_child(local, state, free_port()).env
    assert json.loads(gateway["EOLAKE_GATEWAY_SENDFILE_ROOTS"]) == [str(state.storage)]
    downloads = service_env(local, state, "postgresql://x", "downloads", "http://127.0.0.1:1", "r")
    assert downloads["EOLAKE_DOWNLOADS_PROXY_SENDS_FILES"] == "true"
    assert "EOLAKE_CATALOG_PROXY_SENDS_FILES" not in service_env(local, state, "x", "catalog", "http://g", "r")
    on_s3 = local.model_copy(update={"storage": local.storage.model_copy(update={"kind": "s3", "bucket": "b"})})
    assert "EOLAKE_GATEWAY_SENDFILE_ROOTS" not in gateway_child(on_s3, state, free_port()).env
    assert "EOLAKE_DOWNLOADS_PROXY_SENDS_FILES" not in service_env(on_s3, state, "x", "downloads", "http://g", "r")
