"""What the kit gives every service: the allow-list of storage locations and hosts (used by the tiles, the downloads
and the time series; its HTTP(S) part is the outbound client's), the STAC paging helper, settings named after the
service's manifest."""

from __future__ import annotations

import os

import pytest
from eolake_downloads.settings import DownloadsSettings
from eolake_tiles.guard import AllowList as TilesAllowList
from eolake_tiles.settings import TilesSettings

from eolake_kit import ServiceSettings
from eolake_kit.allowlist import AllowList, BucketPrefix, Location, NotAllowed
from eolake_kit.stac import NextLink, next_link
from eolake_spec import manifest as service_manifest


@pytest.fixture
def storage(tmp_path):
    root = tmp_path / "storage"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.tif").write_bytes(b"")
    (root / "a b.tif").write_bytes(b"")
    (tmp_path / "secret.txt").write_text("no")
    os.symlink(tmp_path / "secret.txt", root / "escape.tif")
    os.symlink(root / "a" / "x.tif", root / "inside.tif")
    (root / "staging").mkdir()
    (root / "staging" / "s.bin").write_bytes(b"")
    return root


@pytest.fixture
def allow(storage):
    return AllowList(
        roots=[storage],
        urls=["https://data.example.org/cogs/", "http://mirror.example.org:8080", "s3://bucket/", "s3://other/p/q/"],
        excluded=[storage / "staging"],
    )


def test_local_paths_are_admitted_below_the_roots_as_real_paths(allow, storage):
    real = str((storage / "a" / "x.tif").resolve())
    assert allow.check(str(storage / "a" / "x.tif")) == Location("file", real)
    assert allow.check(f"file://{storage}/a/x.tif").target == real
    assert allow.check(str(storage / "inside.tif")).target == real  # a link that stays inside: its target
    assert allow.check(f"file://{storage}/a%20b.tif").target == str(storage.resolve() / "a b.tif")  # file URLs decode


@pytest.mark.parametrize(
    "href",
    [
        "/etc/passwd",
        "{s}/escape.tif",  # a symbolic link out of the root
        "{s}/a/../../secret.txt",
        "{s}/a/../x.tif",  # '..' is refused even when it would stay inside
        "file://{s}/a/%2e%2e/%2e%2e/secret.txt",  # percent-encoded '..' in a file URL
        "file://host{s}/a/x.tif",  # a file URL with a host
        "a/x.tif",  # relative
        "{s}/staging/s.bin",  # an excluded root below an allowed one
        "{s}/a/x.tif\x00.png",
        "{s}/a/x.tif\n",
        "",
        "{s}-sibling/x.tif",  # a sibling whose name starts like the root
    ],
)
def test_local_paths_outside_or_malformed_are_refused(allow, storage, href):
    with pytest.raises(NotAllowed):
        allow.check(href.format(s=storage))


def test_s3_objects_in_allowed_buckets_and_prefixes(allow):
    assert allow.check("s3://bucket/x/y.tif") == Location("s3", "bucket/x/y.tif")
    assert allow.check("s3://bucket/x/y.tif").bucket_key == ("bucket", "x/y.tif")
    assert allow.check("s3://other/p/q/r.tif").target == "other/p/q/r.tif"
    assert allow.check("s3://bucket/a%2e%2e/b?c#d").target == "bucket/a%2e%2e/b?c#d"  # keys are literal


@pytest.mark.parametrize(
    "href",
    [
        "s3://bucketx/a.tif",
        "s3://bucke/a.tif",
        "s3://other/p/a.tif",  # outside the prefix
        "s3://other/p/qq/a.tif",  # a prefix is a whole segment
        "s3://bucket/../other/a.tif",
        "s3://bucket/a/./b.tif",
        "s3://bucket/a//b.tif",
        "s3://bucket/",
        "s3://bucket",
        "s3://bucket/a\\b.tif",
        "s3://user@bucket/a.tif",
    ],
)
def test_s3_objects_outside_or_malformed_are_refused(allow, href):
    with pytest.raises(NotAllowed):
        allow.check(href)


def test_http_locations_are_checked_by_scheme_host_port_and_path_prefix(allow):
    for href in [
        "https://data.example.org/cogs/a.tif",
        "https://DATA.example.org:443/cogs/sub/a.tif?sig=1",
        "http://mirror.example.org:8080/anything",
    ]:
        assert allow.check(href) == Location("http", href)


@pytest.mark.parametrize(
    "href",
    [
        "http://data.example.org/cogs/a.tif",  # another scheme
        "https://data.example.org:8443/cogs/a.tif",  # another port
        "https://data.example.org/cogsx/a.tif",  # a prefix is a whole segment
        "https://data.example.org/other/a.tif",
        "https://data.example.org/cogs/../other/a.tif",
        "https://data.example.org/cogs/%2e%2e/other/a.tif",
        "https://data.example.org/cogs/%2E%2E/other/a.tif",
        "https://user:pw@data.example.org/cogs/a.tif",
        "https://user@data.example.org/cogs/a.tif",
        "https://data.example.org.evil.net/cogs/a.tif",
        "https://evil.net/https://data.example.org/cogs/a.tif",
        "http://mirror.example.org/anything",  # port 80, not 8080
        "http://169.254.169.254/latest/meta-data",
        "https://[::1/cogs/a.tif",
    ],
)
def test_http_locations_outside_or_malformed_are_refused(allow, href):
    with pytest.raises(NotAllowed):
        allow.check(href)


@pytest.mark.parametrize(
    "href", ["ftp://data.example.org/cogs/a.tif", "gs://bucket/a.tif", "vrt:///etc/passwd", "javascript://x"]
)
def test_other_schemes_are_refused(allow, href):
    with pytest.raises(NotAllowed, match="scheme"):
        allow.check(href)


def test_the_http_part_is_the_outbound_clients(allow):
    """The same list gives the client that fetches what it admits: no second list of hosts."""
    assert allow.egress.admits("https://data.example.org/cogs/a.tif")
    assert not allow.egress.admits("https://data.example.org/other/a.tif")
    assert not allow.egress.admits("s3://bucket/a.tif")


def test_an_empty_allow_list_admits_nothing(storage):
    for href in [str(storage / "a" / "x.tif"), "s3://bucket/a", "https://data.example.org/cogs/a.tif"]:
        with pytest.raises(NotAllowed):
            AllowList().check(href)


@pytest.mark.parametrize("value", ["s3://", "s3:///key", "s3://b/a/../", "s3://b/x?y", "s3://b//x/"])
def test_bucket_prefixes_are_validated(value):
    with pytest.raises(ValueError):
        BucketPrefix.parse(value)


def test_bucket_prefixes_accept_a_bare_bucket_name():
    assert BucketPrefix.parse("bucket") == BucketPrefix("bucket", "")
    assert BucketPrefix.parse("s3://b/p/q") == BucketPrefix("b", "p/q/")


def test_an_invalid_http_prefix_is_refused_at_construction():
    with pytest.raises(ValueError):
        AllowList(urls=["https://user:pw@host/"])


# ------------------------------------------------------------------ STAC paging


def test_next_link_get_and_post():
    assert next_link({"links": [{"rel": "self", "href": "/a"}, {"rel": "next", "href": "/b?token=2"}]}) == NextLink(
        "/b?token=2", "GET", None, False
    )
    post = next_link({"links": [{"rel": "next", "href": "/s", "method": "post", "body": {"token": "t"}, "merge": 1}]})
    assert post == NextLink("/s", "POST", {"token": "t"}, True)


@pytest.mark.parametrize(
    "page",
    [
        {},
        {"links": None},
        {"links": "next"},
        {"links": ["next", 3]},
        {"links": [{"rel": "prev", "href": "/a"}]},
        {"links": [{"rel": "next"}]},
        {"links": [{"rel": "next", "href": ""}]},
        {"links": [{"rel": "next", "href": 7}]},
        [],
        None,
    ],
)
def test_no_next_link(page):
    assert next_link(page) is None


def test_next_link_ignores_a_body_that_is_not_an_object():
    assert next_link({"links": [{"rel": "next", "href": "/s", "method": "POST", "body": [1]}]}) == NextLink(
        "/s", "POST", None, False
    )


# ------------------------------------------------------------------ settings from the manifest


def test_a_services_settings_take_prefix_name_path_and_port_from_its_manifest(monkeypatch):
    class CatalogLike(ServiceSettings):
        manifest = service_manifest("catalog")

    class WebLike(ServiceSettings):
        manifest = service_manifest("web")

    catalog = CatalogLike()
    assert (catalog.service_name, catalog.root_path, catalog.port) == (
        "catalog",
        "/stac",
        service_manifest("catalog").port,
    )
    assert WebLike().root_path == ""  # the web view sits at the base URL itself
    monkeypatch.setenv("EOLAKE_CATALOG_PORT", "9123")
    monkeypatch.setenv("EOLAKE_WEB_PORT", "not a port")
    assert CatalogLike().port == 9123 and ServiceSettings().port == 8000  # the base keeps its own prefix
    with pytest.raises(ValueError, match="port"):
        WebLike()


@pytest.mark.parametrize(
    "make",
    [
        lambda: TilesSettings(allowed_prefixes=["gs://bucket/"]),
        lambda: TilesSettings(allowed_prefixes=["https://u:p@host/x/"]),
        lambda: DownloadsSettings(allowed_hosts=["user:pw@host"]),
        lambda: DownloadsSettings(allowed_buckets=["bucket?x"]),
    ],
    ids=["tiles-scheme", "tiles-credentials", "downloads-credentials", "downloads-bucket"],
)
def test_an_allow_list_entry_the_kit_cannot_check_fails_at_start(make):
    with pytest.raises(ValueError):
        make()


def test_the_services_allow_lists_come_from_their_settings(tmp_path):
    (tmp_path / "data" / "staging").mkdir(parents=True)
    (tmp_path / "data" / "a.bin").write_bytes(b"")
    settings = DownloadsSettings(storage_path=tmp_path / "data", allowed_hosts=["h:8080"], allowed_buckets=["b"])
    sources = settings.sources
    assert sources.check(str(tmp_path / "data" / "a.bin")).kind == "file"
    assert sources.check("https://h:8080/x").kind == "http" and sources.check("s3://b/k").target == "b/k"
    for refused in [str(tmp_path / "data" / "staging" / "x"), "https://h/x", "s3://c/k"]:
        with pytest.raises(NotAllowed):
            sources.check(refused)
    tiles = TilesAllowList(tmp_path / "data", ["s3://b/p/"])
    assert tiles.check("s3://b/p/x.tif") == "s3://b/p/x.tif"
