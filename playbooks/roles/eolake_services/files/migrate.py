"""Bring the eolake database to this release, on an app host with the release's Python; safe to run any number of
times. Prints {"changed": bool, "before": ..., "after": ...} as JSON.

    EOLAKE_MIGRATION_DSN=postgresql://… migrate.py APP_ROLE [--pgstac]

The DSN comes from the environment (never the command line, which other local users can read). --pgstac (the DSN
of a role that may create extensions): PostGIS and pgstac's migrations with pypgstac, then the app
role's pgstac rights. Always: each service's own schema (the manifests' `schema` modules), owned by APP_ROLE.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import psycopg
from psycopg import sql

from eolake_spec import manifests


def state(dsn: str) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        pgstac = conn.execute("SELECT to_regproc('pgstac.get_version') IS NOT NULL").fetchone()[0]
        version = conn.execute("SELECT pgstac.get_version()").fetchone()[0] if pgstac else None
        tables = conn.execute(
            "SELECT table_schema, count(*) FROM information_schema.tables GROUP BY table_schema ORDER BY table_schema"
        ).fetchall()
    return {"pgstac": version, "tables": {schema: count for schema, count in tables}}


def migrate_pgstac(dsn: str, app_role: str) -> None:
    from pypgstac.db import PgstacDB
    from pypgstac.migrate import Migrate

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    with PgstacDB(dsn=dsn) as db:
        Migrate(db).run_migration()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT pgstac_ingest TO {}").format(sql.Identifier(app_role)))
        conn.execute(sql.SQL("ALTER ROLE {} SET search_path = pgstac, public").format(sql.Identifier(app_role)))


def main(argv: list[str]) -> int:
    dsn, app_role = os.environ["EOLAKE_MIGRATION_DSN"], argv[0]
    before = state(dsn)
    if "--pgstac" in argv[1:]:
        migrate_pgstac(dsn, app_role)
    for m in manifests().values():
        if m.schema:
            importlib.import_module(m.schema).migrate(dsn, app_role)
    after = state(dsn)
    print(json.dumps({"changed": before != after, "before": before, "after": after}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
