"""The download service's tables and the procrastinate job queue, both in the ``downloads`` schema.

`migrate(superuser_dsn, app_role)` is idempotent; it runs as a superuser (the embedded PostgresCluster.migrate, or
`python -m eolake_downloads.schema <dsn>` as a migration step on Kubernetes) and leaves the app role owning the
schema, so services and workers need no more rights than their own schema.
"""

from __future__ import annotations

import sys

import procrastinate
import psycopg
from procrastinate.schema import SchemaManager
from psycopg import sql

from eolake_kit.database import create_owned_schema

SCHEMA = "downloads"
QUEUE = "downloads"
SEARCH_PATH = f"-c search_path={SCHEMA}"

TABLES = """
CREATE TABLE IF NOT EXISTS orders (
    id uuid PRIMARY KEY,
    owner text NOT NULL,
    status text NOT NULL CHECK (status IN ('orderable', 'ordered', 'succeeded', 'failed', 'canceled')),
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now(),
    finished timestamptz,
    reason text,
    request jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_owner_created ON orders (owner, created DESC, id DESC);
CREATE INDEX IF NOT EXISTS orders_open ON orders (owner) WHERE status IN ('orderable', 'ordered');
CREATE TABLE IF NOT EXISTS files (
    id uuid PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position int NOT NULL,
    collection text NOT NULL,
    item text NOT NULL,
    asset text NOT NULL,
    name text NOT NULL,
    href text NOT NULL,
    media_type text,
    expected_checksum text,
    expected_size bigint,
    state text NOT NULL CHECK (state IN ('queued', 'staging', 'ready', 'failed', 'canceled', 'expired')),
    reason text,
    attempts int NOT NULL DEFAULT 0,
    size bigint,
    checksum text,
    location text,
    staged_at timestamptz,
    expires_at timestamptz,
    updated timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS files_order ON files (order_id, position);
CREATE INDEX IF NOT EXISTS files_pending ON files (state) WHERE state IN ('queued', 'staging');
CREATE INDEX IF NOT EXISTS files_expiry ON files (expires_at) WHERE state = 'ready';
-- Retrievals (an offline item staged back online) and provider fallback, added after the first release.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'order'
    CHECK (kind IN ('order', 'retrieval'));
ALTER TABLE orders ADD COLUMN IF NOT EXISTS target_collection text;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS target_item text;
CREATE UNIQUE INDEX IF NOT EXISTS orders_one_retrieval ON orders (target_collection, target_item)
    WHERE kind = 'retrieval' AND status = 'ordered';
ALTER TABLE files ADD COLUMN IF NOT EXISTS sources jsonb;
ALTER TABLE files ADD COLUMN IF NOT EXISTS provider text;
ALTER TABLE files ADD COLUMN IF NOT EXISTS fallbacks jsonb NOT NULL DEFAULT '[]';
ALTER TABLE files ADD COLUMN IF NOT EXISTS restore_to text;
"""


def migrate(dsn: str, app_role: str = "eolake_app") -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        create_owned_schema(conn, SCHEMA, app_role)
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(app_role)))
            conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(SCHEMA)))
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('eolake_downloads.migrate'))")
            conn.execute(TABLES)
            present = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.procrastinate_jobs",)).fetchone()[0]
            if present is None:
                conn.execute(SchemaManager.get_schema())


def job_app(dsn: str, pool_size: int = 2, options: str = "") -> procrastinate.App:
    """The procrastinate app (not opened) on the downloads schema; tasks are registered by the worker module.
    `options`: more session settings (the service's database bounds)."""
    connector = procrastinate.PsycopgConnector(
        conninfo=dsn, kwargs={"options": f"{SEARCH_PATH} {options}".strip()}, min_size=1, max_size=pool_size
    )
    return procrastinate.App(connector=connector)


if __name__ == "__main__":
    migrate(sys.argv[1], *sys.argv[2:3])
