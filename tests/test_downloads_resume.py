"""Byte-level resume of the download workers' copies (eolake_downloads.sources.fetch): a copy cut short goes on from
the bytes it has when the source is unchanged, starts over when it changed or cannot send a part, and the checksum
always covers the whole file. Real files, a real HTTP source on loopback (Range, If-Range, ETag) and a real
S3-compatible server (moto in server mode: ranged GetObject with IfMatch)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from eolake_downloads.settings import DownloadsSettings
from eolake_downloads.sources import CopyInProgress, Source, fetch, resolve, validator_note
from prometheus_client import REGISTRY

from servers import moto_server

DATA = os.urandom(3 * 1024 * 1024 + 12345)  # a few chunks and a bit
KEPT = 1024 * 1024 + 777  # what the copy cut short holds


class RangeSource:
    """Serves DATA with an ETag; answers `Range: bytes=N-` with a 206 when `ranges` is on and If-Range (if sent)
    names its ETag. Records each request's Range and the bytes it sent."""

    def __init__(self):
        self.ranges, self.etag, self.requests = True, '"v1"', []
        source = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                wanted = self.headers.get("Range")
                same = self.headers.get("If-Range") in (None, source.etag)
                start = int(wanted.removeprefix("bytes=").rstrip("-")) if wanted and source.ranges and same else 0
                body = DATA[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
                self.send_header("ETag", source.etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                source.requests.append((wanted, len(body)))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def http_source():
    source = RangeSource()
    yield source
    source.server.shutdown()


@pytest.fixture
def world(tmp_path, http_source):
    http_source.ranges, http_source.etag, http_source.requests = True, '"v1"', []
    original = tmp_path / "data" / "big.bin"
    original.parent.mkdir()
    original.write_bytes(DATA)
    settings = DownloadsSettings(storage_path=tmp_path / "data", allowed_hosts=[http_source.host])
    return {
        "settings": settings,
        "file": resolve(str(original), settings),
        "original": original,
        "http": resolve(f"http://{http_source.host}/big.bin", settings),
        "part": tmp_path / "copy.part",
    }


def fetched() -> float:
    return REGISTRY.get_sample_value("eolake_download_source_bytes_total", {"service": "downloads"}) or 0.0


def copy(source: Source, world) -> tuple[str, int, float]:
    """fetch's answer and the bytes it read from the source."""
    before = fetched()
    sha, size = fetch(source, world["part"], world["settings"])
    return sha, size, fetched() - before


def cut_short(world, source: Source) -> None:
    """A copy of `source` whose worker died after KEPT bytes: the part and its validator note."""
    fetch(source, world["part"], world["settings"])
    with open(world["part"], "r+b") as part:
        part.truncate(KEPT)


WHOLE = (hashlib.sha256(DATA).hexdigest(), len(DATA))


@pytest.mark.parametrize("kind", ["file", "http"])
def test_a_copy_cut_short_reads_only_the_bytes_it_lacks(world, http_source, kind):
    cut_short(world, world[kind])
    sha, size, read = copy(world[kind], world)
    assert (sha, size) == WHOLE and world["part"].read_bytes() == DATA
    assert read == len(DATA) - KEPT
    if kind == "http":
        assert http_source.requests[-1] == (f"bytes={KEPT}-", len(DATA) - KEPT)


def test_a_changed_local_file_is_copied_again_from_the_start(world):
    cut_short(world, world["file"])
    os.utime(world["original"], ns=(0, 10**18))  # touched since: another version, for all we know
    sha, size, read = copy(world["file"], world)
    assert (sha, size) == WHOLE and read == len(DATA)


@pytest.mark.parametrize("change", ["etag", "no ranges"])
def test_an_http_source_that_changed_or_sends_no_part_is_copied_again(world, http_source, change):
    cut_short(world, world["http"])
    if change == "etag":
        http_source.etag = '"v2"'
    else:
        http_source.ranges = False
    sha, size, read = copy(world["http"], world)
    assert (sha, size) == WHOLE and read == len(DATA)
    assert http_source.requests[-1] == (f"bytes={KEPT}-", len(DATA))  # asked for the rest, got the whole


def test_a_part_without_its_validator_is_not_trusted(world):
    cut_short(world, world["file"])
    validator_note(world["part"]).unlink()
    sha, size, read = copy(world["file"], world)
    assert (sha, size) == WHOLE and read == len(DATA)


def test_a_copy_another_worker_holds_is_left_alone(world):
    cut_short(world, world["file"])
    with open(world["part"], "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(CopyInProgress):
            fetch(world["file"], world["part"], world["settings"])
    assert world["part"].stat().st_size == KEPT, "the other worker's bytes were touched"
    assert Path(world["part"]).read_bytes() == DATA[:KEPT]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    import boto3

    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        client = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket="src")
        yield url, client


def test_an_s3_copy_cut_short_reads_only_the_bytes_it_lacks_unless_the_object_changed(world, s3, monkeypatch):
    url, client = s3
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    client.put_object(Bucket="src", Key="big.bin", Body=DATA)
    world["settings"] = world["settings"].model_copy(update={"allowed_buckets": ["src"], "source_s3_endpoint": url})
    source = resolve("s3://src/big.bin", world["settings"])
    cut_short(world, source)
    sha, size, read = copy(source, world)
    assert (sha, size) == WHOLE and read == len(DATA) - KEPT

    cut_short(world, source)
    client.put_object(Bucket="src", Key="big.bin", Body=DATA[::-1])  # another version: another ETag
    sha, size, read = copy(source, world)
    assert (sha, size) == (hashlib.sha256(DATA[::-1]).hexdigest(), len(DATA)) and read == len(DATA)
