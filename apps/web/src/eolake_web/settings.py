from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from eolake_kit import ServiceSettings
from eolake_spec import manifests
from eolake_web.manifest import MANIFEST


def default_services() -> dict[str, str]:
    """Every installed service at its default prefix (their manifests), the web view itself left out."""
    return {m.name: m.path for m in manifests().values() if m.path != "/"}


OBSERVERS = ("prometheus", "alertmanager", "traces")
ORIGIN_URL = re.compile(r"https?://[^/?#@\s]+(/[^?#\s]*)?")
PREFIX = re.compile(r"(/[a-z0-9][a-z0-9-]*)+")
NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")


class WebSettings(ServiceSettings):
    manifest = MANIFEST

    title: str = "eolake"
    services: dict[str, str] = Field(
        default_factory=default_services,
        description="the platform's services the web view links to and polls, name → path prefix under the same "
        'origin (JSON in EOLAKE_WEB_SERVICES), e.g. {"catalog": "/stac", "tiles": "/tiles"}',
    )
    observers: dict[str, str] = Field(
        default_factory=dict,
        description="where the operations console's admin-only proxy reaches the platform's observers, name → "
        "internal URL (JSON in EOLAKE_WEB_OBSERVERS, set by the deployment target): prometheus, "
        "alertmanager, traces (the embedded trace store); a missing one is reported as not deployed",
    )
    static_dir: Path | None = Field(None, description="the web view's files; None: the ones in this package")
    vendor_dir: Path | None = Field(
        None, description="the npm libraries copied by `python -m eolake_web.assets`; None: static_dir/vendor"
    )
    static_max_age: int = Field(31_536_000, ge=0, description="seconds browsers keep versioned static files")
    oidc_client_id: str = Field(
        "eolake-web",
        pattern=r"^[A-Za-z0-9._:-]{1,100}$",
        description="the web view's public client at the OIDC issuer (auth.oidc_issuer): "
        "authorization code with PKCE, redirect URI the base URL's /",
    )

    @field_validator("root_path")
    @classmethod
    def at_the_root(cls, value: str) -> str:
        # The gateway's catch-all "/" is the web view; links in the page are relative to the origin.
        if value not in ("", "/"):
            raise ValueError("the web view is served at the base URL itself: root_path must be empty")
        return ""

    @field_validator("services")
    @classmethod
    def service_prefixes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, prefix in value.items():
            if not NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a service name (lowercase letters, digits, - and _)")
            if not PREFIX.fullmatch(prefix):
                raise ValueError(
                    f"services.{name}: {prefix!r} must be a path prefix like /stac (not /, no "
                    "trailing slash, no scheme or host: services are reached through the same origin)"
                )
        if "catalog" not in value:
            raise ValueError("services must name the catalog: every page of the web view reads it")
        return value

    @field_validator("observers")
    @classmethod
    def observer_urls(cls, value: dict[str, str]) -> dict[str, str]:
        for name, url in value.items():
            if name not in OBSERVERS:
                raise ValueError(f"observers: {name!r} is not one of {', '.join(OBSERVERS)}")
            if not ORIGIN_URL.fullmatch(url):
                raise ValueError(f"observers.{name}: {url!r} is not an http(s) URL without query or credentials")
        return {name: url.rstrip("/") for name, url in value.items()}

    @property
    def static_path(self) -> Path:
        return self.static_dir or Path(__file__).parent / "static"

    @property
    def vendor_path(self) -> Path:
        return self.vendor_dir or self.static_path / "vendor"
