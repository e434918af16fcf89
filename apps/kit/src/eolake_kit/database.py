"""What the services' own migrations share (psycopg, imported where used: not every service has it)."""

from __future__ import annotations

from typing import Any


def create_owned_schema(conn: Any, schema: str, role: str) -> None:
    """The service's schema, owned by its application role (identifiers quoted), unless it exists already."""
    from psycopg import sql

    conn.execute(
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(sql.Identifier(schema), sql.Identifier(role))
    )
