"""Where a file comes from (allow-listed sources) and how it is fetched, hashed and published (staging storage)."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from eolake_downloads.settings import DownloadsSettings
from eolake_kit import outbound

CHUNK = 1024 * 1024
SHA256_MULTIHASH = "1220"


class SourceError(Exception):
    """A permanent failure: not retried (not allowed, not found, checksum mismatch, not configured)."""


class TransientError(Exception):
    """Worth another try after a pause: 5xx, timeouts, connection errors."""


@dataclass(frozen=True)
class Source:
    kind: str  # file | http | s3 | eodag
    location: str  # a path, a URL, bucket/key

    @property
    def bucket_key(self) -> tuple[str, str]:
        bucket, _, key = self.location.partition("/")
        return bucket, key


def resolve(href: str, settings: DownloadsSettings) -> Source:
    """The source behind an asset href, or SourceError when it is outside the allow-list."""
    parts = urlsplit(href)
    scheme = parts.scheme.lower()
    if scheme in ("", "file"):
        raw = unquote(parts.path) if scheme == "file" else href
        if not raw.startswith("/"):
            raise SourceError(f"relative asset path {href!r} is not allowed")
        if "\x00" in raw or any(seg == ".." for seg in raw.split("/")):
            raise SourceError(f"path traversal in {href!r} is not allowed")
        path = Path(raw).resolve()
        if not any(path.is_relative_to(root) for root in settings.source_roots) or \
                path.is_relative_to(settings.staging_dir):
            raise SourceError(f"source {href!r} is outside the allow-list")
        return Source("file", str(path))
    if scheme in ("http", "https"):
        host = (parts.hostname or "").lower()
        netloc = f"{host}:{parts.port}" if parts.port else host
        allowed = {h.lower() for h in settings.allowed_hosts}
        if host not in allowed and netloc not in allowed:
            raise SourceError(f"host {netloc or '?'} is outside the allow-list")
        return Source("http", href)
    if scheme == "s3":
        bucket, key = parts.netloc, parts.path.lstrip("/")
        if bucket not in settings.allowed_buckets or not key:
            raise SourceError(f"bucket {bucket!r} is outside the allow-list")
        if any(seg == ".." for seg in key.split("/")):
            raise SourceError(f"path traversal in {href!r} is not allowed")
        return Source("s3", f"{bucket}/{key}")
    if scheme == "eodag":
        if not settings.eodag_enabled:
            raise SourceError("EODAG provider downloads are not configured on this platform")
        return Source("eodag", href)
    raise SourceError(f"unsupported source scheme {scheme!r}")


def s3_client(settings: DownloadsSettings, endpoint: str | None):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name=settings.s3_region or "us-east-1",
                        config=Config(connect_timeout=settings.source_timeout, read_timeout=settings.source_timeout,
                                      retries={"max_attempts": 1}))


def _chunks(source: Source, settings: DownloadsSettings) -> Iterator[bytes]:
    if source.kind == "file":
        try:
            with open(source.location, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
        except FileNotFoundError:
            raise SourceError(f"source file not found: {source.location}") from None
        except IsADirectoryError:
            raise SourceError(f"source is a directory: {source.location}") from None
        return
    if source.kind == "http":
        try:
            with outbound.client(settings.source_destinations, timeout=settings.source_timeout) as client, \
                    client.stream("GET", source.location) as resp:
                if resp.status_code >= 500 or resp.status_code in (408, 429):
                    raise TransientError(f"source answered {resp.status_code}")
                if resp.status_code != 200:
                    raise SourceError(f"source answered {resp.status_code}")
                yield from resp.iter_bytes(CHUNK)
        except httpx.TransportError as e:
            raise TransientError(f"source unreachable: {e.__class__.__name__}: {e}") from None
        return
    if source.kind == "s3":
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = source.bucket_key
        try:
            client = s3_client(settings, settings.source_s3_endpoint or settings.s3_endpoint)
            body = client.get_object(Bucket=bucket, Key=key)["Body"]
            while chunk := body.read(CHUNK):
                yield chunk
        except ClientError as e:
            code = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code >= 500:
                raise TransientError(f"S3 answered {code}") from None
            raise SourceError(f"S3 source s3://{bucket}/{key}: {e.response.get('Error', {}).get('Code')}") from None
        except BotoCoreError as e:
            raise TransientError(f"S3 unreachable: {e}") from None
        return
    raise SourceError("EODAG provider downloads are not configured on this platform")


def fetch(source: Source, dest: Path, settings: DownloadsSettings,
          alive: Callable[[], bool] = lambda: True) -> tuple[str, int]:
    """Copy the source to dest (a temporary name), returning (sha256 hex, size). `alive` is asked between chunks;
    a False answer (the order was canceled) stops the copy with SourceError."""
    digest, size = hashlib.sha256(), 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        for i, chunk in enumerate(_chunks(source, settings)):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            if i % 64 == 63 and not alive():
                raise SourceError("canceled")
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size


def check_multihash(expected: str | None, sha256_hex: str) -> None:
    if not expected:
        return
    expected = expected.lower()
    if not expected.startswith(SHA256_MULTIHASH):
        return  # another hash function: the computed sha2-256 is recorded instead
    if expected[len(SHA256_MULTIHASH):] != sha256_hex:
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
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self.tmp_dir / f"{file_id}.{uuid.uuid4().hex}.part"

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
