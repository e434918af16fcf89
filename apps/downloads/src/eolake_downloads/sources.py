"""Where a file comes from (allow-listed sources) and how it is fetched, hashed and published (staging storage).

A copy goes to a temporary file named after the file (`<id>.part`), beside a note of the source's validator (local
file: size and modification time; HTTP: strong ETag or Last-Modified; S3: ETag). A copy cut short (its worker
killed, the source dropping the connection) resumes from the bytes the temporary file holds: a local file is read
from there, an HTTP source asked for the rest (`Range` with `If-Range`), an S3 object too (`Range` with `IfMatch`);
when the source changed since, or cannot send a part, or there is no validator, the copy starts over. The checksum
covers the whole file (the bytes kept are hashed again, locally) and is checked before anything is published.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from eolake_downloads import metrics
from eolake_downloads.settings import DownloadsSettings
from eolake_kit import outbound
from eolake_kit.allowlist import NotAllowed

CHUNK = 1024 * 1024
log = logging.getLogger("eolake.downloads.sources")
SHA256_MULTIHASH = "1220"


class SourceError(Exception):
    """A permanent failure: not retried (not allowed, not found, checksum mismatch, not configured)."""


class Canceled(SourceError):
    """The file's order was canceled while it was being copied."""


class TransientError(Exception):
    """Worth another try after a pause: 5xx, timeouts, connection errors."""


class CopyInProgress(Exception):
    """Another live worker holds the file's copy in progress: it goes on with it, this one leaves it alone."""


@dataclass(frozen=True)
class Source:
    kind: str  # file | tier (the offline tier: a file, slow to come) | http | s3 | eodag
    location: str  # a path, a URL, bucket/key

    @property
    def bucket_key(self) -> tuple[str, str]:
        bucket, _, key = self.location.partition("/")
        return bucket, key


def resolve(href: str, settings: DownloadsSettings) -> Source:
    """The source behind an asset href, or SourceError when it is outside the allow-list."""
    scheme = urlsplit(href).scheme.lower()
    if scheme == "eodag":
        if not settings.eodag_enabled:
            raise SourceError("EODAG provider downloads are not configured on this platform")
        return Source("eodag", href)
    if scheme not in ("", "file", "http", "https", "s3"):
        raise SourceError(f"unsupported source scheme {scheme!r}")
    try:
        location = settings.sources.check(href)
    except NotAllowed as exc:
        raise SourceError(f"source {href!r}: {exc}") from None
    offline = settings.offline_root
    if location.kind == "file" and offline and Path(location.target).is_relative_to(offline):
        return Source("tier", location.target)
    return Source(location.kind, location.target)


def s3_client(settings: DownloadsSettings, endpoint: str | None):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=settings.s3_region or "us-east-1",
        config=Config(
            connect_timeout=settings.source_timeout, read_timeout=settings.source_timeout, retries={"max_attempts": 1}
        ),
    )


@dataclass
class Opened:
    """A source opened for reading: from byte `start` (0, or the offset asked for when the source sends the rest),
    with its validator (None: it gave none, a copy of it cannot resume)."""

    start: int
    validator: str | None
    chunks: Iterator[bytes]


@contextmanager
def open_source(source: Source, settings: DownloadsSettings, offset: int = 0, validator: str | None = None):
    """The source's bytes from `offset` if it is still the one `validator` names, else from 0."""
    opener = {"file": _open_file, "tier": _open_tier, "http": _open_http, "s3": _open_s3}.get(source.kind)
    if opener is None:
        raise SourceError("EODAG provider downloads are not configured on this platform")
    with opener(source, settings, offset if validator else 0, validator) as opened:
        yield opened


@contextmanager
def _open_file(source: Source, settings: DownloadsSettings, offset: int, validator: str | None):
    try:
        f = open(source.location, "rb")
    except FileNotFoundError:
        raise SourceError(f"source file not found: {source.location}") from None
    except IsADirectoryError:
        raise SourceError(f"source is a directory: {source.location}") from None
    with f:
        stat = os.fstat(f.fileno())
        current = f"{stat.st_size}:{stat.st_mtime_ns}"
        start = offset if current == validator and offset <= stat.st_size else 0
        f.seek(start)
        yield Opened(start, current, iter(lambda: f.read(CHUNK), b""))


@contextmanager
def _open_tier(source: Source, settings: DownloadsSettings, offset: int, validator: str | None):
    """A file of the offline tier: it comes after the tier's delay (simulated: a tape library mounting it)."""
    time.sleep(settings.offline_delay_seconds)
    with _open_file(source, settings, offset, validator) as opened:
        yield opened


def restored_location(source: Source, settings: DownloadsSettings) -> Path:
    """Where a file of the offline tier goes once retrieved: the same place in the online storage."""
    assert settings.offline_root is not None  # a tier source exists only with an offline tier
    return settings.storage_path.resolve() / Path(source.location).relative_to(settings.offline_root)


@contextmanager
def _open_http(source: Source, settings: DownloadsSettings, offset: int, validator: str | None):
    headers = {"Range": f"bytes={offset}-", "If-Range": validator} if offset and validator else {}
    try:
        with outbound.client(settings.sources.egress, timeout=settings.source_timeout) as client:
            with client.stream("GET", source.location, headers=headers) as resp:
                if resp.status_code == 416:  # nothing after offset: the whole copy was there; fetch it again
                    resp.close()
                    with client.stream("GET", source.location) as whole:
                        yield _http_opened(whole, 0)
                    return
                yield _http_opened(resp, offset)
    except httpx.TransportError as e:
        raise TransientError(f"source unreachable: {e.__class__.__name__}: {e}") from None


def _http_opened(resp: httpx.Response, offset: int) -> Opened:
    if resp.status_code >= 500 or resp.status_code in (408, 429):
        raise TransientError(f"source answered {resp.status_code}")
    if resp.status_code not in (200, 206):
        raise SourceError(f"source answered {resp.status_code}")
    start = 0
    if resp.status_code == 206:
        first = resp.headers.get("content-range", "").removeprefix("bytes ").split("-", 1)[0]
        if first != str(offset):
            raise TransientError(f"source sent another part than asked: {resp.headers.get('content-range')}")
        start = offset
    etag = resp.headers.get("etag")
    validator = etag if etag and not etag.startswith("W/") else resp.headers.get("last-modified")
    return Opened(start, validator, resp.iter_bytes(CHUNK))


@contextmanager
def _open_s3(source: Source, settings: DownloadsSettings, offset: int, validator: str | None):
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = source.bucket_key
    try:
        client = s3_client(settings, settings.source_s3_endpoint or settings.s3_endpoint)
        answer = None
        if offset:
            try:
                answer = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-", IfMatch=validator)
            except ClientError as e:
                if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") not in (412, 416):
                    raise  # 412: changed since; 416: nothing after offset: fetch it whole
        start = offset if answer is not None else 0
        answer = answer or client.get_object(Bucket=bucket, Key=key)
        body = answer["Body"]
        yield Opened(start, answer.get("ETag"), iter(lambda: body.read(CHUNK), b""))
    except ClientError as e:
        code = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code >= 500:
            raise TransientError(f"S3 answered {code}") from None
        raise SourceError(f"S3 source s3://{bucket}/{key}: {e.response.get('Error', {}).get('Code')}") from None
    except BotoCoreError as e:
        raise TransientError(f"S3 unreachable: {e}") from None


def fetch(
    source: Source, dest: Path, settings: DownloadsSettings, alive: Callable[[], bool] = lambda: True
) -> tuple[str, int]:
    """Copy the source to dest (a temporary name), resuming from the bytes dest already holds when the source is
    unchanged; returns (sha256 hex of the whole file, size). `alive` is asked between chunks; a False answer (the
    order was canceled) stops the copy with SourceError."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    note = validator_note(dest)
    with open(dest, "a+b") as out:
        try:
            fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when this process ends
        except BlockingIOError:
            raise CopyInProgress(f"another worker is copying {dest.name}") from None
        kept = out.seek(0, os.SEEK_END)
        saved = _read_note(note)
        with open_source(source, settings, kept, saved) as opened:
            digest = _hash_kept(out, opened.start)
            if opened.start:
                log.info("copy resumed", extra={"file": dest.name, "from_byte": opened.start})
            note.write_text(json.dumps({"validator": opened.validator}))
            size = opened.start
            for i, chunk in enumerate(opened.chunks):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                metrics.BYTES_FETCHED.labels(metrics.SERVICE).inc(len(chunk))
                if i % 64 == 63 and not alive():
                    raise Canceled("canceled")
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size


def _hash_kept(out, start: int):
    """The hash of the first `start` bytes of `out`, which is cut there (what follows is fetched again)."""
    digest = hashlib.sha256()
    out.truncate(start)
    out.seek(0)
    left = start
    while left and (block := out.read(min(CHUNK, left))):
        digest.update(block)
        left -= len(block)
    out.seek(start)
    return digest


def validator_note(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_note(note: Path) -> str | None:
    try:
        return json.loads(note.read_text()).get("validator")
    except (OSError, ValueError, AttributeError):
        return None


def check_multihash(expected: str | None, sha256_hex: str) -> None:
    if not expected:
        return
    expected = expected.lower()
    if not expected.startswith(SHA256_MULTIHASH):
        return  # another hash function: the computed sha2-256 is recorded instead
    if expected[len(SHA256_MULTIHASH) :] != sha256_hex:
        raise SourceError(f"checksum mismatch: expected {expected}, got {SHA256_MULTIHASH}{sha256_hex}")


# ------------------------------------------------------------------ staging storage


class Staging:
    """Where verified files are published. Local: atomic rename inside the staging dir. S3: one PUT of the
    verified temporary file (an object becomes visible only when complete)."""

    def __init__(self, settings: DownloadsSettings):
        self.settings = settings
        self.kind = settings.storage_kind
        self.tmp_dir = settings.staging_dir / ".tmp"

    def temp_path(self, file_id: str) -> Path:
        """The file's copy in progress: the same name every time, so that a later try resumes it."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self.tmp_dir / f"{file_id}.part"

    def discard(self, tmp: Path) -> None:
        tmp.unlink(missing_ok=True)
        validator_note(tmp).unlink(missing_ok=True)

    def publish(self, tmp: Path, order_id: str, file_id: str) -> str:
        if self.kind == "s3":
            key = f"{self.settings.s3_prefix}{order_id}/{file_id}"
            self._s3().upload_file(str(tmp), self.settings.s3_bucket, key)
            tmp.unlink(missing_ok=True)
            return key
        final = self.settings.staging_dir / order_id / file_id
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        return str(final)

    def restore(self, tmp: Path, location: str) -> str:
        """Publish a retrieved file of the offline tier at its online place (atomic rename)."""
        final = Path(location)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        return str(final)

    def remove(self, location: str) -> None:
        if self.kind == "s3":
            self._s3().delete_object(Bucket=self.settings.s3_bucket, Key=location)
            return
        path = Path(location)
        if path.is_relative_to(self.settings.staging_dir):
            path.unlink(missing_ok=True)
            try:
                path.parent.rmdir()
            except OSError:
                pass

    def remove_order(self, order_id: str) -> None:
        if self.kind == "local":
            shutil.rmtree(self.settings.staging_dir / order_id, ignore_errors=True)

    def _s3(self):
        return s3_client(self.settings, self.settings.s3_endpoint)
