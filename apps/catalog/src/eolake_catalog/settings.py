from __future__ import annotations

from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr
from stac_fastapi.pgstac.config import PostgresSettings, ServerSettings

from eolake_catalog.manifest import MANIFEST
from eolake_kit import ServiceSettings
from eolake_kit.replicas import ReplicaSettings
from eolake_kit.settings import PostgresUrl
from eolake_spec import PgstacSearch

# The read pool's own session settings. pgstac's `readonly`: no search bookkeeping written per search. No parallel
# workers: a search wants its first page (LIMIT 11), and launching workers for it cost 40 ms of a 53 ms CQL2 search
# at 100k items (bench/explain.py), on a machine where concurrent requests already use every core.
READS = {"pgstac.readonly": "true", "max_parallel_workers_per_gather": "0"}


class CatalogSettings(ServiceSettings, ReplicaSettings):
    manifest = MANIFEST

    database_url: PostgresUrl = Field(
        SecretStr("postgresql://eolake@127.0.0.1:5432/eolake"),
        description="postgresql://user:password@host:port/dbname",
    )
    pool_size: int = Field(8, ge=2, le=100, description="connections per worker: reads plus a quarter for writes")
    pgstac: PgstacSearch = Field(PgstacSearch(), description="how searches count matches (the spec's, as JSON)")
    cache_entries: int = Field(512, ge=0, le=100_000, description="search answers kept per worker (0: no cache)")
    cache_mib: int = Field(32, ge=1, le=4096, description="and at most this much of them (MiB, as JSON) per worker")
    title: str = "eolake catalog"
    description: str = "STAC API over the eolake data lake"

    def postgres(self, pool_size: int, reads: bool = False, replica: bool = False) -> PostgresSettings:
        """Connection settings; `reads`: the read pool's, whose searches count as the spec says and leave pgstac's
        search bookkeeping alone (its `readonly` mode: no write, hence no WAL flush, per search, and none on a
        replica, which refuses writes); `replica`: the read replica's (read_database_url)."""
        session = {
            **self.limits.postgres_options(),
            **(READS if reads else {}),
            **(self.pgstac.session_settings() if reads else {}),
        }
        url = self.read_database_url if replica and self.read_database_url else self.database_url
        parts = urlsplit(url.get_secret_value())
        return PostgresSettings(
            pguser=unquote(parts.username or ""),
            pgpassword=unquote(parts.password or ""),
            pghost=parts.hostname,
            pgport=parts.port or 5432,
            pgdatabase=parts.path.strip("/"),
            db_min_conn_size=0,
            db_max_conn_size=pool_size,
            server_settings=ServerSettings(application_name="eolake-catalog", **session),
        )

    @property
    def write_pool_size(self) -> int:
        return max(1, self.pool_size // 4)
