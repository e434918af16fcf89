from __future__ import annotations

from pydantic import Field, SecretStr

from eolake_events.manifest import MANIFEST
from eolake_kit import ServiceSettings
from eolake_kit.settings import PostgresUrl

EXCHANGE = "eolake.events"


class EventsSettings(ServiceSettings):
    manifest = MANIFEST

    database_url: PostgresUrl = Field(SecretStr("postgresql://eolake_app@127.0.0.1:5432/eolake"))
    amqp_url: SecretStr = Field(
        SecretStr("amqp://127.0.0.1:5672/"), description="amqp://user:password@host:port/vhost of the broker (a secret)"
    )
    exchange: str = Field(EXCHANGE, pattern=r"^[A-Za-z0-9._-]{1,127}$", description="the durable topic exchange")
    sources: dict[str, str] = Field(
        {},
        description="CloudEvents `source` by the service that changed (catalog, "
        "downloads): its public URL; default urn:eolake:<service>",
    )
    batch_size: int = Field(100, ge=1, le=10_000, description="outbox rows read at once")
    poll_seconds: float = Field(5, gt=0, le=300, description="longest wait for a NOTIFY before the outbox is read")
    confirm_seconds: float = Field(10, gt=0, le=300, description="longest wait for the broker's confirm of a message")
    retry_seconds: float = Field(1, gt=0, le=60, description="first wait after a failure, doubled each time…")
    retry_max_seconds: float = Field(10, gt=0, le=600, description="… up to this")

    @property
    def dsn(self) -> str:
        return self.database_url.get_secret_value()

    def source(self, service: str) -> str:
        return self.sources.get(service) or f"urn:eolake:{service}"
