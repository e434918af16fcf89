"""The transactional outbox: every catalog and order change writes its event in the transaction that makes it.

Triggers on pgstac's `collections` and `items` (whoever writes: the catalog's transactions, pypgstac's loader,
`eolake ingest`) and on the downloads service's `orders` (a new order, each change of its status) insert one row
into `eolake_events.outbox`, holding the CloudEvent (all attributes but `source`, which the relay adds) and its AMQP
routing key. The change and its event commit together or not at all; the relay (eolake_events.relay) publishes the
rows in id order and deletes each once the broker confirmed it.

pgstac updates an item by deleting and inserting it again (`update_item`, upserts): an insert that follows the
delete of the same item in the same transaction replaces that `deleted` event by one `updated` event.

The triggers write only while the outbox is switched on (`eolake_events.switch`): the relay switches it on when it
starts, so a platform that runs no relay (no broker configured) keeps no outbox that nobody drains.
`python -m eolake_events.schema DSN --off` switches it off and empties it, for a platform that stops publishing.

`migrate(dsn, app_role)` is idempotent, run as a superuser after pgstac's migrations and the downloads schema (a
missing `downloads.orders` is skipped: then no order events).
"""

from __future__ import annotations

import argparse

import psycopg
from psycopg import sql

from eolake_kit.database import create_owned_schema

SCHEMA = "eolake_events"
CHANNEL = "eolake_events"  # NOTIFY'd at every commit that wrote an event: the relay wakes at once

TABLES = r"""
CREATE TABLE IF NOT EXISTS eolake_events.outbox (
    id bigserial PRIMARY KEY,
    service text NOT NULL,                       -- where the change happened: catalog, downloads
    routing_key text NOT NULL,
    subject text NOT NULL,                       -- the CloudEvent's subject, e.g. collections/c/items/i
    event jsonb NOT NULL,                        -- the CloudEvent, without `source` (the relay's)
    tx bigint NOT NULL DEFAULT txid_current(),
    created timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS outbox_tx_subject ON eolake_events.outbox (tx, subject);
CREATE TABLE IF NOT EXISTS eolake_events.switch (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    enabled boolean NOT NULL DEFAULT false,
    changed timestamptz NOT NULL DEFAULT now()
);
INSERT INTO eolake_events.switch (one) VALUES (true) ON CONFLICT DO NOTHING;
"""

FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION eolake_events.enabled() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    SELECT coalesce((SELECT enabled FROM eolake_events.switch), false)
$$;
CREATE OR REPLACE FUNCTION eolake_events.action(operation text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE operation WHEN 'INSERT' THEN 'created' WHEN 'UPDATE' THEN 'updated' ELSE 'deleted' END
$$;
CREATE OR REPLACE FUNCTION eolake_events.record(service text, kind text, action text, scope text, subject text,
                                                data jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO eolake_events.outbox (service, routing_key, subject, event) VALUES (
        service, concat_ws('.', service, kind, action, scope), subject,
        jsonb_build_object(
            'specversion', '1.0',
            'id', gen_random_uuid()::text,
            'type', concat_ws('.', 'org.eolake', service, kind, action),
            'subject', subject,
            'time', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'datacontenttype', 'application/json',
            'data', data));
    PERFORM pg_notify('eolake_events', '');
END $$;
CREATE OR REPLACE FUNCTION eolake_events.collection_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    row_ pgstac.collections%ROWTYPE := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
BEGIN
    IF eolake_events.enabled() THEN
        PERFORM eolake_events.record('catalog', 'collection', eolake_events.action(TG_OP), row_.id,
                                     'collections/' || row_.id,
                                     jsonb_build_object('id', row_.id, 'title', row_.content->>'title'));
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION eolake_events.item_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    row_ pgstac.items%ROWTYPE := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    subject_ text := 'collections/' || row_.collection || '/items/' || row_.id;
    action_ text := eolake_events.action(TG_OP);
    data_ jsonb := jsonb_build_object('collection', row_.collection, 'id', row_.id);
BEGIN
    IF NOT eolake_events.enabled() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN  -- pgstac's update: delete then insert, in one transaction
        DELETE FROM eolake_events.outbox WHERE tx = txid_current() AND subject = subject_
            AND routing_key = concat_ws('.', 'catalog', 'item', 'deleted', row_.collection);
        IF FOUND THEN
            action_ := 'updated';
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        data_ := data_ || jsonb_build_object('datetime', row_.datetime, 'end_datetime', row_.end_datetime);
    END IF;
    PERFORM eolake_events.record('catalog', 'item', action_, row_.collection, subject_, data_);
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION eolake_events.order_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    IF eolake_events.enabled() THEN
        PERFORM eolake_events.record('downloads', 'order', NEW.status, NULL, 'orders/' || NEW.id,
            jsonb_build_object('id', NEW.id, 'status', NEW.status, 'owner', NEW.owner, 'reason', NEW.reason,
                               'previous_status', CASE TG_OP WHEN 'UPDATE' THEN OLD.status END,
                               'updated', NEW.updated));
    END IF;
    RETURN NULL;
END $$;
"""

# (name, table, events, condition, function): row triggers, each change an event of its own. An order's event is its
# creation, then each change of its status.
TRIGGERS = (
    ("eolake_events_collections", "pgstac.collections", "INSERT OR UPDATE OR DELETE", "", "collection_changed"),
    ("eolake_events_items", "pgstac.items", "INSERT OR UPDATE OR DELETE", "", "item_changed"),
    ("eolake_events_order_created", "downloads.orders", "INSERT", "", "order_changed"),
    (
        "eolake_events_order_status",
        "downloads.orders",
        "UPDATE OF status",
        "WHEN (OLD.status IS DISTINCT FROM NEW.status)",
        "order_changed",
    ),
)


def migrate(dsn: str, app_role: str = "eolake_app") -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        create_owned_schema(conn, SCHEMA, app_role)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('eolake_events.migrate'))")
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(app_role)))
            conn.execute(TABLES)  # the relay's role owns them
            conn.execute("RESET ROLE")
            conn.execute(FUNCTIONS)  # owned by the migrating superuser: SECURITY DEFINER writes for any writer
            for name, table, events, condition, function in TRIGGERS:
                if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None:
                    conn.execute(
                        f"CREATE OR REPLACE TRIGGER {name} AFTER {events} ON {table} FOR EACH ROW "
                        f"{condition} EXECUTE FUNCTION {SCHEMA}.{function}()"
                    )


def switch(conn: psycopg.Connection, enabled: bool) -> None:
    """On: changes write events from now on. Off: they stop, and what was not published is dropped."""
    with conn.transaction():
        conn.execute(
            "UPDATE eolake_events.switch SET enabled = %s, changed = now() WHERE enabled <> %s", (enabled, enabled)
        )
        if not enabled:
            conn.execute("DELETE FROM eolake_events.outbox")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eolake_events.schema")
    parser.add_argument("dsn")
    parser.add_argument("app_role", nargs="?", default="eolake_app")
    parser.add_argument("--off", action="store_true", help="stop writing events and empty the outbox")
    args = parser.parse_args(argv)
    migrate(args.dsn, args.app_role)
    if args.off:
        with psycopg.connect(args.dsn) as conn:
            switch(conn, False)


if __name__ == "__main__":
    main()
