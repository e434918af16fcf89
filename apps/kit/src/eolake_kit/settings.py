"""Settings every service shares; each service subclasses with its own env prefix (EOLAKE_<SERVICE>_)."""

from __future__ import annotations

import re
from ipaddress import ip_network
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from eolake_kit.auth import AuthConfig
from eolake_spec import Limits, ServiceManifest, manifest, manifests


def _postgres_url(value: SecretStr) -> SecretStr:
    parts = urlsplit(value.get_secret_value())
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.path.strip("/"):
        raise ValueError("database_url must look like postgresql://user:password@host:port/dbname")
    return value


# A database URL setting of the services that hold one; a secret, so it never appears in logs or reprs.
PostgresUrl = Annotated[SecretStr, AfterValidator(_postgres_url)]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        raise ValueError(f"{value!r} is not an http(s) URL without credentials, query or fragment")
    return value.rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class Peer(BaseModel):
    """Another platform service this one calls: where to reach it, and the public URL its own links use."""

    url: HttpUrl = Field(description="internal address, path prefix included (e.g. http://catalog:8081/stac)")
    public_url: HttpUrl | None = Field(None, description="its public URL (base URL + prefix); links carry it")

    def internal(self, href: str) -> str | None:
        """`href` rewritten onto the internal address when it points below the peer (internal or public URL),
        else None: a link elsewhere is never followed."""
        for base in filter(None, (self.url, self.public_url)):
            rest = below(href, base)
            if rest is not None:
                return self.url + rest
        return None


def below(href: str, base: str) -> str | None:
    """What follows `base` in `href` (path rest, query), or None when `href` is not below `base` (same scheme, host,
    port and path prefix; no dot segments)."""
    try:
        target, root = urlsplit(href), urlsplit(base)
        same_origin = (target.scheme, target.hostname, target.port) == (root.scheme, root.hostname, root.port)
    except ValueError:
        return None
    prefix = root.path.rstrip("/")
    if not same_origin or target.username or target.password or target.fragment:
        return None
    if not (target.path == prefix or target.path.startswith(prefix + "/")):
        return None
    rest = target.path[len(prefix) :]
    if any(segment in (".", "..") for segment in rest.split("/")) or "%2e" in rest.lower() or "%2f" in rest.lower():
        return None
    return rest + (f"?{target.query}" if target.query else "")


class RateLimitSettings(BaseModel):
    """Token buckets per user (or client address) on the expensive routes; unset values: the manifest's."""

    requests_per_second: float | None = Field(None, gt=0)
    burst: int | None = Field(None, ge=1)
    routes: list[str] | None = Field(None, description='patterns of "METHOD /path" (below the prefix) to limit')

    @field_validator("routes")
    @classmethod
    def patterns(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or []:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return value


class ServiceSettings(BaseSettings):
    """A service's settings class names its manifest (`manifest = MANIFEST`): its environment prefix
    (EOLAKE_<SERVICE>_) and the defaults of service_name, root_path and port come from there."""

    model_config = SettingsConfigDict(env_prefix="EOLAKE_", env_nested_delimiter="__", extra="ignore")
    manifest: ClassVar[ServiceManifest | None] = None

    service_name: str = "service"
    public_url: AnyHttpUrl = Field(
        AnyHttpUrl("http://127.0.0.1:8080"),
        description="the platform's public base URL; links are built from it, never from the Host header",
    )
    root_path: str = Field("", description="this service's public path prefix, e.g. /stac")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=32)
    log_level: str = "info"
    otlp_endpoint: str | None = Field(None, description="OTLP/HTTP endpoint for traces; no export when unset")
    trace_sample_ratio: float = Field(1.0, ge=0, le=1, description="share of traces recorded (with an endpoint)")
    graceful_timeout: float = Field(20, ge=0, description="seconds in-flight requests get on shutdown")
    readiness_timeout: float = Field(2, gt=0, description="seconds each readiness check may take")
    auth: AuthConfig = AuthConfig()
    rate_limit: RateLimitSettings = RateLimitSettings()
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [ip_network("127.0.0.0/8"), ip_network("::1/128")],
        description="peers whose X-Forwarded-For is believed (JSON list of networks)",
    )
    limits: Limits = Field(Limits(), description="request and database bounds (the spec's limits, as JSON)")
    cors_origins: list[str] = Field(
        ["*"],
        description='origins whose pages may call this service (JSON list; ["*"]: any, [] : none); never '
        "with credentials",
    )
    peers: dict[str, Peer] = Field(
        {},
        description="the platform services this one calls, by name (JSON), at the internal addresses the "
        "deployment target derives; a peer not named here is reached through the public URL",
    )
    matomo_url: AnyHttpUrl | None = Field(
        None, description="Matomo base URL (…/matomo.php is appended); usage analytics off when unset"
    )
    matomo_site_id: int | None = Field(None, ge=1, description="Matomo site id; needed with matomo_url")
    matomo_token: SecretStr | None = Field(
        None, description="Matomo token_auth, sent in the bulk request body; only when Matomo requires it"
    )
    matomo_timeout: float = Field(3, gt=0, le=30, description="seconds one tracking request may take")
    matomo_queue_size: int = Field(1000, ge=1, description="tracking hits held while Matomo is slow; more are dropped")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        own = cls.__dict__.get("manifest")
        if own is None:
            return
        cls.model_config["env_prefix"] = own.env_prefix
        defaults = {"service_name": own.name, "root_path": own.path.rstrip("/"), "port": own.port}
        for name, value in defaults.items():
            cls.model_fields[name].default = value
        cls.model_rebuild(force=True)

    @field_validator("root_path")
    @classmethod
    def prefix(cls, value: str) -> str:
        value = value.rstrip("/")
        if value and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
            raise ValueError(f"{value!r} is not a path prefix like /stac")
        return value

    @field_validator("cors_origins")
    @classmethod
    def origins(cls, values: list[str]) -> list[str]:
        for value in values:
            parts = urlsplit(value)
            if value != "*" and (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or value.rstrip("/") != f"{parts.scheme}://{parts.netloc}"
            ):
                raise ValueError(f"{value!r} is not * or an origin like https://maps.example.org")
        return [v.rstrip("/") for v in values]

    @model_validator(mode="after")
    def no_path_in_public_url(self) -> ServiceSettings:
        if self.public_url.path not in (None, "", "/"):
            raise ValueError("public_url is the platform base URL: put the service prefix in root_path")
        return self

    @model_validator(mode="after")
    def matomo_needs_site(self) -> ServiceSettings:
        if self.matomo_url and self.matomo_site_id is None:
            raise ValueError("matomo_url needs matomo_site_id")
        return self

    @property
    def matomo_enabled(self) -> bool:
        return bool(self.matomo_url and self.matomo_site_id)

    def rate_limited_routes(self) -> tuple[str, ...]:
        """The patterns ("METHOD /path" below the prefix) of the routes with a token bucket: the settings' own, or
        the service manifest's."""
        if self.rate_limit.routes is not None:
            return tuple(self.rate_limit.routes)
        known = manifests().get(self.service_name)
        return known.rate_limited if known else ()

    def peer(self, name: str) -> Peer:
        """A peer service: as configured, or (a service run on its own) through the public base URL at the peer's
        default prefix (its manifest)."""
        if name in self.peers:
            return self.peers[name]
        public = str(self.public_url).rstrip("/") + manifest(name).path
        return Peer(url=public, public_url=public)

    def postgres_options(self) -> str:
        """libpq `options` of this service's database sessions: its statement, idle-in-transaction and lock
        timeouts (the spec's limits)."""
        return " ".join(f"-c {name}={value}" for name, value in self.limits.postgres_options().items())

    @property
    def service_url(self) -> str:
        return str(self.public_url).rstrip("/") + self.root_path
