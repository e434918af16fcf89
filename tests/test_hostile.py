"""A hostile client against the embedded platform, through its gateway: every request below is answered with a
4xx/5xx problem (or a capped answer) within the server's own time budget, the services' memory stays under the
bound stated here, and other services answer meanwhile.

Memory (resident set, /proc/<pid>/status) is printed before and after each attack: `pytest -s` shows the figures.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from eolake.embedded.supervisor import GATEWAY_MEMORY_LIMIT
from eolake_spec import load_stack
from servers import RunningPlatform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

LIMITS = load_stack("local").edge_limits()
BUDGET = LIMITS.request_seconds + 10  # the gateway's own time budget, and a margin for a loaded machine
# What one process may hold, attacked or not (the gateway streams bodies: its own bound in the supervisor).
MEMORY_BOUND_MIB = {"catalog": 1024, "search": 1024, "tiles": 1536, "gateway": GATEWAY_MEMORY_LIMIT >> 20}
GROWTH_BOUND_MIB = 200  # what one attack may add to a service
DEEP_TEXT = "NOT (" * 10_000 + "id = 'x'" + ")" * 10_000
DEEP_JSON = '{"op":"not","args":[' * 10_000 + '{"op":"=","args":[{"property":"id"},"x"]}' + "]}" * 10_000
EUROPE = {"type": "Polygon", "coordinates": [[[-10, 35], [40, 35], [40, 70], [-10, 70], [-10, 35]]]}


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """The process's resident set now (VmRSS), or the most it ever held (VmHWM, its high-water mark)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


@contextmanager
def memory_of(platform: RunningPlatform, *services: str, what: str) -> Iterator[None]:
    """Asserts each service stays under its bound and grows by less than GROWTH_BOUND_MIB; prints the figures."""
    pids = platform.pids()
    before = {name: rss_mib(pids[name]) for name in services}
    yield
    after = {name: rss_mib(platform.pids()[name]) for name in services}
    for name in services:
        peak = rss_mib(pids[name], "VmHWM")  # the attack's peak too: a spike given back is still a spike
        print(
            f"\n[memory] {what}: {name} {before[name]:.0f} MiB -> {after[name]:.0f} MiB, peak {peak:.0f} MiB "
            f"(bound {MEMORY_BOUND_MIB[name]} MiB)"
        )
        assert platform.pids()[name] == pids[name], f"{name} was restarted during {what}"
        assert peak < MEMORY_BOUND_MIB[name], f"{name} held up to {peak:.0f} MiB during {what}"
        assert after[name] - before[name] < GROWTH_BOUND_MIB, f"{name} grew by {after[name] - before[name]:.0f} MiB"


@contextmanager
def others_answer(url: str) -> Iterator[None]:
    """Polls another service's URL while the block runs: every answer must be 200 (and at least one arrive)."""
    statuses: list[int] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=BUDGET) as client:
            while not done.is_set():
                statuses.append(client.get(url).status_code)
                done.wait(0.2)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(BUDGET)
    assert statuses and set(statuses) == {200}, statuses


def answered(response: httpx.Response, status: int, bound: str | None = None) -> dict:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    if bound:  # the bound refused it (a 504 past the time budget would name the budget instead)
        assert bound in body["detail"], body
    return body


@pytest.fixture(scope="module")
def base(platform: RunningPlatform) -> str:
    return platform.base_url


@pytest.fixture(scope="module")
def client(base) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=BUDGET) as c:
        yield c


def test_nested_cql2_depth_10000(platform, client, base):
    with (
        memory_of(platform, "catalog", "search", what="nested CQL2 (depth 10,000)"),
        others_answer(base + "/thesaurus/"),
    ):
        for path in ("/stac/search", "/search/search"):
            text = client.post(path, json={"filter": DEEP_TEXT, "filter-lang": "cql2-text"})
            answered(text, 400, "CQL2 filter exceeds 20000 characters")
            shorter = client.post(path, json={"filter": "NOT (" * 3000 + "id = 'x'" + ")" * 3000})
            answered(shorter, 400, "CQL2 filter nesting exceeds 16 levels")
            deep_json = client.post(
                path, content=f'{{"filter": {DEEP_JSON}}}', headers={"content-type": "application/json"}
            )
            answered(deep_json, 400, "request body nesting exceeds 32 levels")


def test_big_bodies_fixed_and_chunked(platform, client, base):
    with (
        memory_of(platform, "gateway", "catalog", "search", what="10 MB body and 100 MB chunked body"),
        others_answer(base + "/thesaurus/"),
    ):
        answered(
            client.post(
                "/stac/search", content=b"{" + b" " * 10_000_000 + b"}", headers={"content-type": "application/json"}
            ),
            413,
            "exceeds",
        )
        chunks = (b" " * 1_048_576 for _ in range(100))  # 100 MB, no Content-Length
        try:
            response = client.post("/search/search", content=chunks, headers={"content-type": "application/json"})
        except httpx.WriteError:  # the gateway answered and closed while the client was still sending
            return
        answered(response, 413, "request body exceeds")


def raw_get(base: str, target: bytes) -> bytes:
    """A GET sent byte for byte (httpx refuses to build URLs this long); the head and body of the answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=BUDGET) as conn:
        conn.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_long_query_string_and_a_3000_term_q(platform, client, base):
    answer = raw_get(base, b"/stac/search?filter=" + b"x" * 100_000)
    assert answer.startswith(b"HTTP/1.1 414 ") and b"application/problem+json" in answer, answer[:300]
    assert b"query string exceeds 8192 bytes" in answer
    terms = ",".join(f"term{i}" for i in range(3000))
    answered(client.get("/search/search", params={"q": terms}), 414, "query string exceeds")
    with memory_of(platform, "search", "catalog", what="3,000-term q"):
        answered(client.post("/search/search", json={"q": terms}), 400, "q exceeds 20 terms")
        answered(client.post("/stac/search", json={"q": terms.split(",")}), 400, "q exceeds 20 terms")


def test_a_huge_limit_is_capped(platform, client):
    with memory_of(platform, "catalog", what="limit=10**12"):
        catalog = client.get("/stac/search", params={"limit": 10**12})
        assert catalog.status_code == 200 and catalog.json()["numberReturned"] <= LIMITS.page_size
        posted = client.post("/stac/search", json={"limit": 10**12})
        assert posted.status_code == 200 and posted.json()["numberReturned"] <= LIMITS.page_size
    search = client.get("/search/search", params={"limit": 10**9})
    assert search.status_code == 200 and search.json()["context"]["limit"] == 100


def test_a_million_vertex_polygon(platform, client):
    ring = [[(i % 3600) / 10 - 180, (i % 1800) / 10 - 90] for i in range(1_000_000)] + [[-180, -90]]
    with memory_of(platform, "gateway", "catalog", "search", what="1-million-vertex polygon"):
        huge = {"intersects": {"type": "Polygon", "coordinates": [ring]}}
        answered(client.post("/stac/search", json=huge), 413, "exceeds")
        smaller = {"intersects": {"type": "Polygon", "coordinates": [ring[:20_000] + [ring[0]]]}}
        answered(client.post("/search/search", json=smaller), 400, "geometry exceeds 10000 positions")
        answered(client.post("/stac/search", json=smaller), 400, "geometry exceeds 10000 positions")
    invalid = {"intersects": {"type": "Point", "coordinates": [500, 100]}}
    answered(client.post("/stac/search", json=invalid), 400, "longitude/latitude")


def test_a_tile_expression_bomb(client):
    base = "/tiles/collections/garonne-wse/tiles/WebMercatorQuad/12/2063/1495.png"
    answered(client.get(base, params={"expression": "(" * 60 + "wse" + ")" * 60}), 400, "nesting exceeds")
    answered(client.get(base, params={"expression": ";".join(["wse"] * 50)}), 400, "more than 8 bands")
    answered(client.get(base, params={"expression": "wse" + "-wse" * 500}), 400, "longer than")


def test_whole_europe_statistics(platform, client, base):
    feature = {"type": "Feature", "properties": {}, "geometry": EUROPE}
    with memory_of(platform, "tiles", what="whole-Europe statistics polygon"), others_answer(base + "/stac/"):
        response = client.post("/tiles/collections/garonne-wse/statistics", params={"assets": "wse"}, json=feature)
        print(f"\n[statistics] whole Europe: {response.status_code} in {response.elapsed.total_seconds():.1f} s")
        assert response.status_code in (200, 400, 413, 504), response.text[:500]
        if response.status_code != 200:  # refused by a bound, or cut at the time budget: said as a problem
            assert response.headers["content-type"] == "application/problem+json", response.text[:500]


def test_tiles_searches_register_body_is_small(client):
    big = {
        "collections": ["garonne-wse"],
        "filter": {"op": "in", "args": [{"property": "id"}, [f"x{i}" for i in range(20_000)]]},
    }
    answered(client.post("/tiles/searches/register", json=big), 413, "exceeds 65536 bytes")


def slow_sockets(base: str, count: int, first: bytes, then: bytes) -> list[socket.socket]:
    host, port = base.removeprefix("http://").split(":")
    conns = []
    for _ in range(count):
        conn = socket.create_connection((host, int(port)), timeout=BUDGET)
        conn.sendall(first)
        conns.append(conn)
    return conns


def closed_within(conns: list[socket.socket], then: bytes, seconds: float) -> list[bytes]:
    """Send `then` a byte per second on every connection until each is closed by the server (or `seconds` pass);
    what each read last."""
    answers: dict[int, bytes] = {}
    deadline = time.monotonic() + seconds
    for byte in then:
        for i, conn in enumerate(conns):
            if i in answers:
                continue
            try:
                conn.sendall(bytes([byte]))
                conn.setblocking(False)
                try:
                    answers[i] = conn.recv(65536) or b"closed"
                except BlockingIOError:
                    pass
                finally:
                    conn.setblocking(True)
            except OSError:
                answers[i] = b"reset"
        if len(answers) == len(conns) or time.monotonic() > deadline:
            break
        time.sleep(1)
    for conn in conns:
        conn.close()
    return [answers.get(i, b"still open") for i in range(len(conns))]


def test_slowloris_headers_and_bodies_are_dropped(base):
    head = b"GET /stac/ HTTP/1.1\r\nHost: x\r\n"
    post = b"POST /search/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    seconds = max(LIMITS.header_seconds, LIMITS.body_idle_seconds) + 15
    results: dict[str, list[bytes]] = {}
    with others_answer(base + "/stac/collections"):
        headers = slow_sockets(base, 16, head, b"")
        bodies = slow_sockets(base, 8, post, b"")
        threads = [
            threading.Thread(
                target=lambda: results.__setitem__("headers", closed_within(headers, b"X-Slow: " + b"y" * 200, seconds))
            ),
            threading.Thread(
                target=lambda: results.__setitem__("bodies", closed_within(bodies, b"{" + b" " * 98 + b"}", seconds))
            ),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert all(a.startswith(b"HTTP/1.1 408") or a in (b"closed", b"reset") for a in results["headers"]), results
    assert all(b" 408 " in a for a in results["bodies"]), results["bodies"]


def test_the_platform_still_answers_everywhere(client):
    for path in ("/stac/", "/search/", "/tiles/", "/thesaurus/", "/stac/readyz", "/search/readyz"):
        assert client.get(path).status_code == 200, path
    assert json.loads(client.get("/stac/collections").text)["collections"]
