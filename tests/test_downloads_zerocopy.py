"""Staged files sent by sendfile (eolake_kit.zerocopy): a real uvicorn on loopback, as the download service and the
gateway run it, serving spans of real files; the bytes that arrive are compared with the file's."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from eolake.embedded.gateway import file_span
from eolake_kit.server import connection_options
from eolake_kit.zerocopy import EXTENSION, FileSpanResponse
from eolake_spec import Limits
from servers import served, wait_until

BIG = 64 * 1024 * 1024  # larger than any socket buffer: sendfile runs many times, waiting for the socket


class Log:
    """What the app was sent by the response, and the bytes it said it handed on."""

    def __init__(self):
        self.messages: list[str] = []
        self.bytes = 0

    def count(self, n: int) -> None:
        self.bytes += n


def span_app(path: Path, log: Log):
    """GET /?start=&length=[&chunked=1]: that span of `path` (chunked: no Content-Length)."""

    async def app(scope, receive, send):
        q = dict(parse_qsl(scope["query_string"].decode()))
        start, length = int(q.get("start", 0)), int(q.get("length", path.stat().st_size))
        headers = {} if q.get("chunked") else {"Content-Length": str(length)}

        async def noted(message):
            log.messages.append(message["type"])
            await send(message)

        await FileSpanResponse(str(path), start, length, headers=headers, sent=log.count)(scope, receive, noted)

    return app


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("zerocopy")
    small = root / "small.bin"
    small.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    big = root / "big.bin"
    with open(big, "wb") as f:  # sparse zeros, but for a marker at each end
        f.write(b"head")
        f.seek(BIG - 4)
        f.write(b"tail")
    return {"small": small, "big": big}


@pytest.fixture(scope="module")
def zero_copy(files):
    log = Log()
    with served(span_app(files["small"], log), lifespan="off", **connection_options(Limits(), zero_copy=True)) as url:
        yield url, log


def test_spans_go_by_sendfile_and_arrive_exact(zero_copy, files):
    url, log = zero_copy
    data = files["small"].read_bytes()
    for query, expected in (
        ("", data),
        ("?start=1000&length=4096", data[1000:5096]),
        (f"?start={len(data) - 10}&length=10", data[-10:]),
        ("?start=5&length=300000&chunked=1", data[5:300005]),  # no Content-Length: h11's chunk lines around it
        ("?start=0&length=0", b""),
    ):
        log.__init__()
        r = httpx.get(url + "/" + query)
        assert r.status_code == 200 and r.content == expected, query
        # no body read through Python; the count is told once sent (the client may have it all before)
        done = (["http.response.start", EXTENSION], len(expected))
        assert wait_until(lambda done=done: (log.messages, log.bytes) == done, 5, 0.01), (query, log.messages)


def test_without_the_extension_the_same_span_is_read_and_streamed(files):
    log = Log()
    app = span_app(files["small"], log)
    with served(app, lifespan="off", **connection_options(Limits(), zero_copy=False)) as url:  # uvloop: no sendfile
        r = httpx.get(url + "/?start=7&length=1000000")
    assert r.content == files["small"].read_bytes()[7:1000007]
    assert EXTENSION not in log.messages and "http.response.body" in log.messages
    assert wait_until(lambda: log.bytes == 1000000, 5, 0.01)


def test_a_large_file_arrives_whole(files):
    log = Log()
    with served(span_app(files["big"], log), lifespan="off", **connection_options(Limits(), zero_copy=True)) as url:
        n, head, tail = 0, b"", b""
        with httpx.stream("GET", url + "/") as r:
            for chunk in r.iter_raw():
                head = head or chunk[:4]
                tail = (tail + chunk)[-4:]
                n += len(chunk)
    assert (n, head, tail) == (BIG, b"head", b"tail") and EXTENSION in log.messages


def open_descriptors(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path)) if fds.exists() else 0


def test_a_client_gone_mid_transfer_leaves_no_error_and_no_open_file(files, caplog):
    with (
        served(span_app(files["big"], Log()), lifespan="off", **connection_options(Limits(), zero_copy=True)) as url,
        caplog.at_level(logging.DEBUG, logger="uvicorn.error"),  # after uvicorn set its level
    ):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            got = 0
            while got < 1024 * 1024:  # well into the body, then gone
                got += len(s.recv(65536))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # a reset
        assert wait_until(lambda: open_descriptors(files["big"]) == 0, 10, 0.02), "the file was left open"
        again = httpx.get(url + "/?start=0&length=4")  # the server goes on serving
        assert again.content == b"head"
    said = [r.getMessage() for r in caplog.records]
    assert any("zero-copy body not completed" in m for m in said), said  # it was cut mid-sendfile
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], said


def test_a_file_shorter_than_announced_ends_the_connection(files, tmp_path):
    short = tmp_path / "short.bin"
    short.write_bytes(b"x" * 1000)
    with served(span_app(short, Log()), lifespan="off", **connection_options(Limits(), zero_copy=True)) as url:
        with pytest.raises(httpx.RemoteProtocolError):  # fewer bytes than Content-Length, then the close
            httpx.get(url + "/?start=0&length=5000")
        assert httpx.get(url + "/?start=0&length=10").content == b"x" * 10


@pytest.mark.parametrize(
    ("status", "content_range", "span"),
    [(200, None, (0, 100)), (206, "bytes 10-19/100", (10, 10)), (206, "bytes 99-99/100", (99, 1))],
)
def test_the_gateway_sends_the_span_the_service_answered(tmp_path, status, content_range, span):
    f = tmp_path / "f"
    f.write_bytes(b"." * 100)
    assert file_span(f, status, content_range) == span


@pytest.mark.parametrize("content_range", [None, "bytes 10-100/100", "bytes 20-10/100", "items 1-2/100", "bytes x"])
def test_a_span_outside_the_file_is_refused(tmp_path, content_range):
    f = tmp_path / "f"
    f.write_bytes(b"." * 100)
    with pytest.raises(ValueError):
        file_span(f, 206, content_range)
