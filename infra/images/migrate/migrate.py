"""Bring the eolake database to the pgstac version of this image; safe to run any number of times.

Connects with libpq's PG* variables (the CloudNativePG superuser): PostGIS, pgstac's migrations, then the rights
of the role the services use (EOLAKE_APP_ROLE, created by CloudNativePG from the Cluster's managed roles).
"""

import os
import sys
import time

import psycopg
from psycopg import sql
from pypgstac.db import PgstacDB
from pypgstac.migrate import Migrate

ROLE_WAIT_SECONDS = 300


def main() -> int:
    role = os.environ.get("EOLAKE_APP_ROLE", "eolake_app")
    with psycopg.connect("", autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    with PgstacDB(dsn="") as db:
        print(f"pgstac at version {Migrate(db).run_migration()}", flush=True)
    deadline = time.monotonic() + ROLE_WAIT_SECONDS
    with psycopg.connect("", autocommit=True) as conn:
        while not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            if time.monotonic() > deadline:
                print(
                    f"role {role} does not exist: check the Cluster's managed roles and its password Secret",
                    file=sys.stderr,
                )
                return 1
            time.sleep(5)
        conn.execute(sql.SQL("GRANT pgstac_ingest TO {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("ALTER ROLE {} SET search_path = pgstac, public").format(sql.Identifier(role)))
    print(f"role {role} has pgstac_ingest", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
