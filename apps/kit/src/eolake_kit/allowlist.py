"""What a service may read: local storage roots, S3 buckets (or key prefixes of them) and HTTP(S) locations.

One allow-list for every service that opens a location named by data (an asset href, a series file): the tiles,
the downloads and their worker, the time series. Its HTTP(S) part is the outbound client's `Destination` (scheme,
host, port, path prefix), so the same list also builds the `Egress` of the client that fetches what it admits.

A location is admitted only when it is well formed: no control characters, no credentials, no `..` segment (also
when percent-encoded), a local path absolute and, once its symbolic links are resolved, below a root. S3 keys are
taken literally (they may hold `?`, `#` or `%`), never URL-decoded, and have no empty, `.` or `..` segment.
Nothing here opens anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

import httpx

from eolake_kit.outbound import Egress

TRAVERSAL = "path traversal ('..') is not allowed"


class NotAllowed(ValueError):
    """A location outside the allow-list, or malformed: never opened."""


@dataclass(frozen=True)
class Location:
    """An admitted location: a real local path, an http(s) URL, or `bucket/key` of an S3 object."""

    kind: Literal["file", "http", "s3"]
    target: str

    @property
    def bucket_key(self) -> tuple[str, str]:
        bucket, _, key = self.target.partition("/")
        return bucket, key


@dataclass(frozen=True)
class BucketPrefix:
    """An S3 bucket, or the keys of it below a prefix (`s3://bucket/` or `s3://bucket/some/prefix/`)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, value: str) -> BucketPrefix:
        bucket, _, prefix = value.removeprefix("s3://").partition("/")
        prefix = prefix.removesuffix("/")
        if not bucket or any(c in value for c in "?#\\") or (prefix and _bad_segments(prefix)):
            raise ValueError(f"{value!r} is not s3://bucket/ or s3://bucket/prefix/")
        return cls(bucket, prefix and prefix + "/")

    def admits(self, bucket: str, key: str) -> bool:
        return bucket == self.bucket and key.startswith(self.prefix)


class AllowList:
    """Local roots (symbolic links resolved; `excluded` roots below them refused) and URL prefixes: `s3://…` as
    `BucketPrefix`, `http(s)://…` as outbound `Destination`s."""

    def __init__(
        self,
        roots: Iterable[str | os.PathLike[str]] = (),
        urls: Iterable[str] = (),
        excluded: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self.roots = tuple(os.path.realpath(r) for r in roots)
        self.excluded = tuple(os.path.realpath(r) for r in excluded)
        urls = list(urls)
        self.buckets = tuple(BucketPrefix.parse(u) for u in urls if u.lower().startswith("s3://"))
        self.egress = Egress(u for u in urls if not u.lower().startswith("s3://"))

    def check(self, href: object) -> Location:
        """The location `href` names, or NotAllowed."""
        if not isinstance(href, str) or not href or any(ord(c) < 32 or c == "\x7f" for c in href):
            raise NotAllowed("the location is empty or malformed")
        scheme = href.partition("://")[0].lower() if "://" in href else ""
        if scheme in ("", "file"):
            return Location("file", self.local(unquote(href[len("file://") :]) if scheme else href))
        if scheme == "s3":
            return Location("s3", self.object(href))
        if scheme in ("http", "https"):
            return Location("http", self.url(href))
        raise NotAllowed(f"locations of scheme {scheme!r} are not allowed")

    def local(self, path: str) -> str:
        """The real path of `path` when it is absolute, without `..`, and below a root (not an excluded one)."""
        if not path.startswith("/"):
            raise NotAllowed("a local location is an absolute path")
        if ".." in path.split("/"):
            raise NotAllowed(TRAVERSAL)
        real = os.path.realpath(path)
        if not _below(real, self.roots) or _below(real, self.excluded):
            raise NotAllowed("the location is outside the allow-list")
        return real

    def object(self, href: str) -> str:
        """`bucket/key` of an `s3://bucket/key` location in an allowed bucket (and key prefix)."""
        bucket, _, key = href[len("s3://") :].partition("/")
        if not key or "\\" in key or _bad_segments(key):
            raise NotAllowed(f"an S3 location is s3://bucket/key, the key without empty or '.' segments: {TRAVERSAL}")
        if not any(b.admits(bucket, key) for b in self.buckets):
            raise NotAllowed("the location is outside the allow-list")
        return f"{bucket}/{key}"

    def url(self, href: str) -> str:
        """`href` when it is an http(s) URL below an allowed destination, without credentials or '..'."""
        try:
            parts = urlsplit(href)
            url = httpx.URL(href)
        except (ValueError, httpx.InvalidURL):
            raise NotAllowed("the location is not a valid URL") from None
        if "@" in parts.netloc:
            raise NotAllowed("a URL location carries no credentials")
        if ".." in unquote(parts.path).split("/"):
            raise NotAllowed(TRAVERSAL)
        if not self.egress.admits(url):
            raise NotAllowed("the location is outside the allow-list")
        return href


def _below(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _bad_segments(key: str) -> bool:
    return any(segment in ("", ".", "..") for segment in key.split("/"))
