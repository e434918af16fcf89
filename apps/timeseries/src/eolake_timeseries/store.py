"""Where a station's series comes from: a file below the storage directory, or an object of the storage bucket.

Each store reads only what the platform's storage holds (an allow-list: the storage directory, or the one
configured bucket), keeps parsed series until their source changes (a file's mtime and size, an object's ETag),
and reports failures as `SeriesError`s carrying the HTTP status the service answers with. The stores are plain
blocking code, run in a thread by the caller; nothing here knows the web framework.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from eolake_kit.allowlist import AllowList, Location, NotAllowed
from eolake_timeseries.hydroweb import Measurement, parse_hydroweb, parse_hydroweb_bytes
from eolake_timeseries.settings import TimeseriesSettings

READ_CHUNK = 256 * 1024


class SeriesError(Exception):
    """A series that cannot be served; `status` is the HTTP status of the answer."""

    status = 500


class SeriesNotFound(SeriesError):
    status = 404


class SeriesMalformed(SeriesError):
    status = 502


class SeriesTooLarge(SeriesError):
    status = 502


class StorageUnavailable(SeriesError):
    status = 503


def outside(station: str) -> SeriesNotFound:
    return SeriesNotFound(f"the series of station {station} is not in this platform's storage")


def malformed(station: str, exc: ValueError, source: str) -> SeriesMalformed:
    """The parser's reason without the source name and line number (those stay in the logs, not the answer)."""
    reason = str(exc).removeprefix(f"{source}:").split(": ", 1)[-1]
    return SeriesMalformed(f"the series file of station {station} is malformed: {reason}")


def allowed(allow_list: AllowList, href: object, station: str, kind: str) -> Location:
    """The location of a station's series when the store's allow-list admits it and it is of the store's kind."""
    try:
        location = allow_list.check(href)
    except NotAllowed:
        raise outside(station) from None
    if location.kind != kind:
        raise outside(station)
    return location


class SeriesStore(Protocol):
    def read(self, href: object, station: str) -> list[Measurement]:
        """The measurements of the series at `href` (the station's asset href); raises SeriesError."""
        ...


class LocalSeries:
    """Series files below the storage directory, re-read when a file's mtime or size changes."""

    def __init__(self, storage: os.PathLike[str] | str | None):
        self.allowed = AllowList(roots=[storage] if storage else [])
        self.parsed: dict[str, tuple[tuple[int, int], list[Measurement]]] = {}

    def read(self, href: object, station: str) -> list[Measurement]:
        real = allowed(self.allowed, href, station, "file").target
        try:
            stat = os.stat(real)
            key = (stat.st_mtime_ns, stat.st_size)
            cached = self.parsed.get(real)
            if cached and cached[0] == key:
                return cached[1]
            _, rows = parse_hydroweb(real)
        except FileNotFoundError:
            raise SeriesNotFound(f"the series file of station {station} is missing") from None
        except ValueError as exc:
            raise malformed(station, exc, real) from None
        self.parsed[real] = (key, rows)
        return rows


def s3_client(settings: TimeseriesSettings, timeout: float, attempts: int) -> Any:
    """A client of the storage endpoint whose calls each take at most `attempts` tries of `timeout` seconds to
    connect and `timeout` seconds per read (credentials: the standard AWS environment variables)."""
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        region_name=settings.s3_region or "us-east-1",
        config=Config(
            connect_timeout=timeout, read_timeout=timeout, retries={"mode": "standard", "total_max_attempts": attempts}
        ),
    )


def read_bounded(body: Any, limit: int) -> bytes | None:
    """At most `limit` bytes of a streaming body, or None when it holds more."""
    chunks, size = [], 0
    while chunk := body.read(min(READ_CHUNK, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
    return b"".join(chunks)


class S3Series:
    """Series objects of the storage bucket, re-parsed only when an object's ETag changes.

    Every read is one conditional GET (If-None-Match: the cached ETag): an unchanged object answers 304 and its
    parsed series is served from memory; a changed one is read (at most `max_bytes`) and parsed again."""

    def __init__(self, bucket: str, client: Any, max_bytes: int, ready_client: Any = None):
        self.bucket, self.client, self.max_bytes = bucket, client, max_bytes
        self.allowed = AllowList(urls=[f"s3://{bucket}/"])
        self.ready_client = ready_client or client
        self.parsed: dict[str, tuple[str, list[Measurement]]] = {}

    @classmethod
    def from_settings(cls, settings: TimeseriesSettings) -> S3Series:
        assert settings.s3_bucket  # the settings validate it for storage_kind s3
        return cls(
            settings.s3_bucket,
            s3_client(settings, settings.s3_timeout, attempts=2),
            settings.max_series_bytes,
            ready_client=s3_client(settings, settings.readiness_timeout, attempts=1),
        )

    def read(self, href: object, station: str) -> list[Measurement]:
        key = allowed(self.allowed, href, station, "s3").bucket_key[1]
        cached = self.parsed.get(key)
        fetched = self._get(key, cached[0] if cached else None, station)
        if fetched is None:
            assert cached is not None  # 304 answers only a conditional GET
            return cached[1]
        etag, data = fetched
        source = f"s3://{self.bucket}/{key}"
        try:
            _, rows = parse_hydroweb_bytes(data, source)
        except ValueError as exc:
            raise malformed(station, exc, source) from None
        if etag:
            self.parsed[key] = (etag, rows)
        return rows

    def ready(self) -> None:
        """Raises unless the bucket answers."""
        self.ready_client.head_bucket(Bucket=self.bucket)

    def _get(self, key: str, etag: str | None, station: str) -> tuple[str | None, bytes] | None:
        """(ETag, content) of the object, or None when it still has `etag`."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, **({"IfNoneMatch": etag} if etag else {}))
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code")
            if status == 304 and etag:
                return None
            if code in ("NoSuchKey", "404"):
                raise SeriesNotFound(f"the series file of station {station} is missing") from None
            raise StorageUnavailable(
                f"the storage answered {status} ({code}) for the series of station {station}"
            ) from None
        except BotoCoreError as exc:
            raise StorageUnavailable(f"the storage is unreachable: {type(exc).__name__}") from None
        body = response["Body"]
        try:
            too_large = response.get("ContentLength", 0) > self.max_bytes
            data = None if too_large else read_bounded(body, self.max_bytes)
        except BotoCoreError as exc:
            raise StorageUnavailable(f"the storage stopped answering: {type(exc).__name__}") from None
        finally:
            body.close()
        if data is None:
            raise SeriesTooLarge(
                f"the series file of station {station} is too large (more than {self.max_bytes} bytes)"
            )
        return response.get("ETag"), data


def series_store(settings: TimeseriesSettings) -> LocalSeries | S3Series:
    """The store the settings name: local files below storage_path, or objects of s3_bucket."""
    if settings.storage_kind == "s3":
        return S3Series.from_settings(settings)
    return LocalSeries(settings.storage_path)
