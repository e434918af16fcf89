"""The one place where an order's status changes: placed (ordered) by the API, canceled by its owner, closed by a
worker (succeeded or failed; a retrieval's item is back online in the same transaction). Every change runs through
`place`, `finish` or `finish_sync`, inside the caller's transaction, and comes back as a `Change`: whatever must
follow a change (an event's outbox row) is written there, on the same connection, so it commits with the change.

The API process uses async connections and the workers sync ones: each statement has both forms, sharing the SQL.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

log = logging.getLogger("eolake.downloads.orders")
OPEN = ("orderable", "ordered")
FINAL = ("succeeded", "failed", "canceled")

_PLACE = (
    "INSERT INTO orders (id, owner, status, request, kind, target_collection, target_item) "
    "VALUES (%(id)s, %(owner)s, 'ordered', %(request)s, %(kind)s, %(collection)s, %(item)s) "
    "RETURNING id, owner, status, kind, reason, target_collection, target_item"
)
_CHANGE = (
    "UPDATE orders SET status = %(to)s, reason = %(reason)s, updated = now(), "
    "finished = CASE WHEN %(to)s = ANY(%(final)s) THEN now() END "
    "WHERE id = %(id)s AND status = ANY(%(from)s) "
    "RETURNING id, owner, status, kind, reason, target_collection, target_item"
)


@dataclass(frozen=True)
class Change:
    order_id: str
    owner: str
    status: str
    kind: str
    reason: str | None
    target: tuple[str, str] | None  # (collection, item) of a retrieval


def _changed(row: dict[str, Any] | None) -> Change | None:
    if row is None:
        return None
    target = (row["target_collection"], row["target_item"]) if row["target_item"] else None
    change = Change(str(row["id"]), row["owner"], row["status"], row["kind"], row["reason"], target)
    log.info("order %s", change.status, extra={"order": change.order_id, "kind": change.kind, "reason": change.reason})
    return change


def _place_params(
    order_id: uuid.UUID, owner: str, request: dict[str, Any], target: tuple[str, str] | None
) -> dict[str, Any]:
    collection, item = target or (None, None)
    return {
        "id": order_id,
        "owner": owner,
        "request": Jsonb(request),
        "kind": "retrieval" if target else "order",
        "collection": collection,
        "item": item,
    }


def _change_params(order_id: str, to: str, reason: str | None) -> dict[str, Any]:
    if to not in FINAL:
        raise ValueError(f"an order cannot go back to {to!r}")
    return {"id": order_id, "to": to, "reason": reason, "final": list(FINAL), "from": list(OPEN)}


async def place(
    conn: psycopg.AsyncConnection,
    order_id: uuid.UUID,
    owner: str,
    request: dict[str, Any],
    target: tuple[str, str] | None = None,
) -> Change:
    """A new order, ordered (for a retrieval, `target`: the item staged back online)."""
    cur = await conn.execute(_PLACE, _place_params(order_id, owner, request, target))
    change = _changed(await cur.fetchone())
    assert change is not None  # an INSERT … RETURNING answers its row
    return change


async def finish(conn: psycopg.AsyncConnection, order_id: str, to: str, reason: str | None = None) -> Change | None:
    """An open order to `to` (final); None when it was not open (finished meanwhile)."""
    cur = await conn.execute(_CHANGE, _change_params(order_id, to, reason))
    return _changed(await cur.fetchone())


def finish_sync(conn: psycopg.Connection, order_id: str, to: str, reason: str | None = None) -> Change | None:
    """`finish` for the workers' connections."""
    return _changed(conn.execute(_CHANGE, _change_params(order_id, to, reason)).fetchone())
