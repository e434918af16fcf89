"""The platform's storage: local folder or S3 bucket, and the optional slow (offline) tier."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from eolake_spec.base import Strict


class OfflineTier(Strict):
    """A slow storage tier (tape, cold archive), simulated locally: products kept there are found in the catalog as
    orderable placeholders and staged back online by a download order (a retrieval)."""

    path: str = Field("offline", description="its folder; relative: beside the storage folder")
    delay_seconds: float = Field(2, ge=0, le=3600, description="what it takes before it sends a file")


class Storage(Strict):
    kind: Literal["local", "s3"] = "local"
    path: str = "data"
    offline: OfflineTier | None = Field(
        None, description="a slow tier whose items are retrieved on request (restored into local storage)"
    )
    bucket: str | None = None
    endpoint: str | None = Field(
        None,
        pattern=r"^https?://[^/?#]+/?$",
        description="S3-compatible endpoint URL (scheme://host[:port]); None: AWS",
    )
    region: str | None = None

    @model_validator(mode="after")
    def s3_needs_bucket(self) -> Storage:
        if self.kind == "s3" and not self.bucket:
            raise ValueError("storage kind s3 needs a bucket")
        if self.offline and self.kind != "local":
            raise ValueError("storage.offline is restored into local storage: it needs storage kind local")
        return self

    def offline_dir(self, storage_dir: str | Path) -> Path | None:
        """The offline tier's folder, for a target that keeps the storage at `storage_dir`."""
        if self.offline is None:
            return None
        return Path(storage_dir).parent / self.offline.path

    def gdal_env(self) -> dict[str, str]:
        """GDAL's settings for reading the bucket (/vsis3/, s3:// COGs); the keys come from the storage Secret.
        An S3-compatible endpoint (MinIO, Ceph…) gets path-style requests; AWS itself, virtual-hosted ones."""
        if self.kind != "s3":
            return {}
        env = {"AWS_VIRTUAL_HOSTING": "TRUE"}
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            env = {
                "AWS_S3_ENDPOINT": parts.netloc,
                "AWS_HTTPS": "NO" if parts.scheme == "http" else "YES",
                "AWS_VIRTUAL_HOSTING": "FALSE",
            }
        if self.region:
            env["AWS_REGION"] = self.region
        return env
