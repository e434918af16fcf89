"""What subscribers rely on: the exchange, the routing keys and the CloudEvents each carries. One place: the service's
root document, the docs (apps/events/README.md) and the tests read it."""

from __future__ import annotations

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"  # structured content mode: the body is the event
ACTIONS = ("created", "updated", "deleted")
ORDER_STATES = ("orderable", "ordered", "succeeded", "failed", "canceled")  # the downloads' STAC order statuses

# routing key pattern → (CloudEvents type, subject, what `data` holds)
ROUTES = {
    "catalog.collection.{action}.{collection}": (
        "org.eolake.catalog.collection.{action}",
        "collections/{collection}",
        "id, title",
    ),
    "catalog.item.{action}.{collection}": (
        "org.eolake.catalog.item.{action}",
        "collections/{collection}/items/{item}",
        "collection, id; datetime, end_datetime (created, updated)",
    ),
    "downloads.order.{state}": (
        "org.eolake.downloads.order.{state}",
        "orders/{order}",
        "id, status, previous_status, owner, reason, updated",
    ),
}


def describe(exchange: str, sources: dict[str, str]) -> dict:
    """The exchange and its messages, as the events service's root document shows them."""
    return {
        "exchange": {"name": exchange, "type": "topic", "durable": True},
        "protocol": "AMQP 0-9-1",
        "delivery": "at least once, in order per routing key; an event redelivered keeps its id",
        "content_mode": "structured",
        "content_type": CONTENT_TYPE,
        "messages": [
            {"routing_key": key, "type": type_, "subject": subject, "data": data}
            for key, (type_, subject, data) in ROUTES.items()
        ],
        "values": {"action": list(ACTIONS), "state": list(ORDER_STATES)},
        "sources": sources,
    }
