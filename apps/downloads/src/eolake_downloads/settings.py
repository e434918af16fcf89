from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from eolake_downloads.manifest import MANIFEST
from eolake_kit import ServiceSettings
from eolake_kit.allowlist import AllowList
from eolake_kit.settings import Peer, PostgresUrl


class DownloadsSettings(ServiceSettings):
    manifest = MANIFEST

    database_url: PostgresUrl = Field(
        SecretStr("postgresql://eolake_app@127.0.0.1:5432/eolake"),
        description="postgresql://user:password@host:port/dbname",
    )
    pool_size: int = Field(4, ge=2, le=100, description="database connections per process")

    # Storage: where staged files are published (the platform spec's storage kind).
    storage_kind: str = Field("local", pattern="^(local|s3)$")
    storage_path: Path = Field(Path("data"), description="local storage root; staging lives in <path>/staging")
    s3_bucket: str | None = None
    s3_endpoint: str | None = Field(None, description="S3-compatible endpoint URL; None: AWS")
    s3_region: str | None = None
    s3_prefix: str = "staging/"
    proxy_sends_files: bool = Field(
        False,
        description="the proxy in front shares local storage and sends staged files itself: when a request says so "
        "(X-Sendfile-Type: X-Sendfile, which the proxy sets and never takes from a client), the answer names the "
        "file (X-Sendfile) instead of carrying it",
    )

    # Sources: what workers may fetch.
    allowed_paths: list[Path] = Field(
        default_factory=list, description="local roots files may come from; empty: storage_path"
    )
    allowed_hosts: list[str] = Field(default_factory=list, description="HTTP(S) hosts (host or host:port)")
    allowed_buckets: list[str] = Field(default_factory=list, description="s3://bucket/… sources")
    source_s3_endpoint: str | None = Field(None, description="endpoint for s3:// sources; None: s3_endpoint")
    eodag_enabled: bool = Field(False, description="EODAG provider downloads (not configured in this release)")
    offline_path: Path | None = Field(
        None,
        description="the slow (offline) tier: items whose assets are there are "
        "retrieved before they can be ordered; None: no such tier",
    )
    offline_delay_seconds: float = Field(
        2, ge=0, le=3600, description="what the offline tier takes before it sends a file (a tape mount, simulated)"
    )
    priorities: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "per collection ('*': any other), the providers of an asset in the order to try them: `local` (its own "
            "href) and its alternates' names; a provider that fails gives way to the next"
        ),
    )
    source_timeout: float = Field(30, gt=0, le=600)
    transient_attempts: int = Field(5, ge=1, le=20, description="tries for a transient source error")
    retry_base_seconds: float = Field(0.5, ge=0, le=60, description="first backoff; doubles each try")

    # Lifecycle and limits.
    expiry_seconds: float = Field(7 * 86400, gt=0, description="staged files are deleted this long after ready")
    maintenance_interval: float = Field(5, gt=0, le=600, description="seconds between reclaim/expiry sweeps")
    stalled_seconds: float = Field(30, gt=0, description="a worker without heartbeat this long is dead")
    heartbeat_seconds: float = Field(5, gt=0)
    quota_bytes: int = Field(50 * 1024**3, ge=0, description="bytes a user may order per quota period")
    quota_period_seconds: int = Field(86400, gt=0)
    quota_concurrent_orders: int = Field(10, ge=1, description="orders a user may have in progress")
    max_items: int = Field(500, ge=1, le=10000, description="files per order")
    worker_concurrency: int = Field(2, ge=1, le=64)
    worker_metrics_port: int = Field(0, ge=0, le=65535, description="worker /metrics port; 0: none")

    @model_validator(mode="after")
    def s3_needs_bucket(self) -> DownloadsSettings:
        if self.storage_kind == "s3" and not self.s3_bucket:
            raise ValueError("storage_kind s3 needs s3_bucket")
        if self.offline_path and self.storage_kind != "local":
            raise ValueError("an offline tier (offline_path) is restored into local storage: storage_kind local")
        if self.heartbeat_seconds >= self.stalled_seconds:
            raise ValueError("heartbeat_seconds must be shorter than stalled_seconds")
        return self

    @model_validator(mode="after")
    def sources_readable(self) -> DownloadsSettings:
        """An allowed host or bucket the allow-list refuses (credentials, a query) fails at start, not at an order."""
        _ = self.sources
        return self

    def priority(self, collection: str) -> list[str]:
        return self.priorities.get(collection) or self.priorities.get("*") or []

    @property
    def offline_root(self) -> Path | None:
        return self.offline_path.resolve() if self.offline_path else None

    @property
    def dsn(self) -> str:
        return self.database_url.get_secret_value()

    @property
    def catalog(self) -> Peer:
        """The STAC API items are resolved in (the `catalog` peer)."""
        return self.peer("catalog")

    @property
    def sources(self) -> AllowList:
        """What workers may fetch: files below the allowed roots and the offline tier (never the staging area),
        objects of the allowed buckets, anything on the allowed HTTP(S) hosts (either scheme)."""
        offline = [self.offline_root] if self.offline_root else []
        return AllowList(
            roots=[*self.source_roots, *offline],
            urls=[
                *(f"{scheme}://{host}" for host in self.allowed_hosts for scheme in ("http", "https")),
                *(f"s3://{bucket}/" for bucket in self.allowed_buckets),
            ],
            excluded=[self.staging_dir],
        )

    @property
    def staging_dir(self) -> Path:
        return self.storage_path.resolve() / "staging"

    @property
    def source_roots(self) -> list[Path]:
        return [p.resolve() for p in (self.allowed_paths or [self.storage_path])]
