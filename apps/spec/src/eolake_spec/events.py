"""The events service's broker and exchange, and where an embedded broker may run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from eolake_spec.base import Strict


class Events(Strict):
    """Where the events service (the outbox relay) publishes: catalog and order changes as CloudEvents on a durable
    AMQP topic exchange (routing keys in apps/events/README.md). Without the `events` service in `services`, nothing
    is published and no outbox is kept."""

    exchange: str = Field("eolake.events", pattern=r"^[A-Za-z0-9._-]{1,127}$", description="the topic exchange")
    broker: Literal["embedded", "external"] = Field(
        "embedded",
        description="embedded: `eolake up` runs RabbitMQ (Debian package rabbitmq-server) in the state "
        "directory; external: a broker reached at the URL of a secret (Kubernetes: "
        "kubernetes.secrets.amqp; on premise: eolake_services_amqp_url; embedded target: "
        "the variable amqp_url_env)",
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="the broker's AMQP port; None: embedded, a free port kept for the next starts; external, 5672",
    )
    amqp_url_env: str = Field(
        "EOLAKE_AMQP_URL",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="external broker, embedded target: the variable holding its amqp:// URL",
    )


def check_broker_target(events: Events | None, enabled: bool, remote_target: bool) -> None:
    """An embedded broker runs only on the embedded target: Kubernetes and on-premise need an external one."""
    if enabled and remote_target and events is not None and events.broker == "embedded":
        raise ValueError(
            "events.broker embedded runs only locally: set it to external, with the broker's URL in "
            "the Secret kubernetes.secrets.amqp (Kubernetes) or eolake_services_amqp_url (on premise)"
        )
