"""Indexes for what users filter on: pgstac queryables with an index type, chosen from the collections' summaries.

pgstac indexes only id, geometry and datetime; a CQL2 filter on any other property scans every item of the
collection (seconds at 100k items). A collection's summaries say which properties its items carry and which values
they take: each summary of plain values (strings or numbers, or a numeric range) with more than one value is a
property worth filtering on, and becomes a queryable with a BTREE index on its collection(s). pgstac's queryables
trigger then creates the index on every partition of those collections, and on every partition created later.

A summary with a single value is left out (a filter on it keeps every item, an index would not help), and so are
the STAC fields whose items hold arrays (`instruments`…: a BTREE over the array's text matches no CQL2 operator).
The wrapper follows the values (to_float for numbers, to_text for strings), the same for a name in every
collection: pgstac picks one queryable row per name when it writes the SQL of a filter, and the index is used
only when its expression is that one.

`migrate(dsn, app_role)` (a migration step of every target, after pgstac's) indexes the collections already there;
`index_summaries(conn, ids)` runs again whenever collections are written (the catalog's transactions;
`index_collections(dsn, ids)` from eolake ingest). Idempotent: a queryable that exists keeps its definition; only
its missing index type, wrapper or collections are added.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

ARRAY_FIELDS = frozenset(
    {
        "instruments",
        "sar:polarizations",
        "eo:bands",
        "raster:bands",
        "proj:shape",
        "proj:transform",
        "proj:bbox",
        "proj:centroid",
        "keywords",
        "providers",
    }
)
NUMBER, STRING = "to_float", "to_text"
SCHEMA = "eolake_catalog"
# The search cache's stamps (eolake_catalog.cache): a counter per collection, moved by every statement that writes
# its items, whichever way they are written: pgstac's functions write through `items` (a statement there lists
# the rows in its transition tables); pypgstac's loader writes to the partitions directly, then refreshes the
# partition's statistics row (`partition_stats`, named after the collection's key). Statement-level triggers:
# a bulk load pays once per statement, not per row.
WRITE_COUNTERS = r"""
CREATE TABLE IF NOT EXISTS eolake_catalog.collection_writes (
    collection text PRIMARY KEY,
    writes bigint NOT NULL DEFAULT 1
);
CREATE OR REPLACE FUNCTION eolake_catalog.count_writes(collections text[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
    INSERT INTO eolake_catalog.collection_writes AS w (collection)
    SELECT DISTINCT unnest(collections) ORDER BY 1
    ON CONFLICT (collection) DO UPDATE SET writes = w.writes + 1
$$;
CREATE OR REPLACE FUNCTION eolake_catalog.items_written() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM eolake_catalog.count_writes(ARRAY(SELECT collection FROM written));
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION eolake_catalog.partitions_written() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM eolake_catalog.count_writes(ARRAY(
        SELECT c.id FROM pgstac.collections c JOIN written p
        ON p.partition = '_items_' || c.key OR starts_with(p.partition, '_items_' || c.key || '_')));
    RETURN NULL;
END $$;
"""
# A collection's `eolake:partition` (eolake_kit.stac.partition_problem) sets how pgstac partitions its items in time,
# whoever writes it (the catalog's transactions, eolake ingest, pypgstac's loader): pgstac makes the partitions at
# its next item write, or moves the items already there when it changes (pgstac's own collections trigger).
PARTITION_AS_ASKED = r"""
CREATE OR REPLACE FUNCTION eolake_catalog.partition_as_asked() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF NEW.content ? 'eolake:partition' THEN
        NEW.partition_trunc := nullif(NEW.content->>'eolake:partition', 'none');
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER eolake_catalog_partition_as_asked BEFORE INSERT OR UPDATE ON pgstac.collections
FOR EACH ROW EXECUTE FUNCTION eolake_catalog.partition_as_asked();
"""
# (table, event, transition table, function): one event per trigger, as transition tables require.
COUNTING_TRIGGERS = {
    "eolake_catalog_items_inserted": ("items", "INSERT", "NEW", "items_written"),
    "eolake_catalog_items_updated": ("items", "UPDATE", "NEW", "items_written"),
    "eolake_catalog_items_deleted": ("items", "DELETE", "OLD", "items_written"),
    "eolake_catalog_partitions_inserted": ("partition_stats", "INSERT", "NEW", "partitions_written"),
    "eolake_catalog_partitions_updated": ("partition_stats", "UPDATE", "NEW", "partitions_written"),
}


@dataclass(frozen=True)
class Queryable:
    name: str
    wrapper: str  # to_float or to_text: also what pgstac wraps the property in when it writes a filter's SQL

    @property
    def definition(self) -> dict[str, Any]:
        return {"type": "number" if self.wrapper == NUMBER else "string"}


def summary_queryable(name: str, summary: object) -> Queryable | None:
    """The queryable a collection summary makes worth indexing, or None."""
    if name in ARRAY_FIELDS or name in {"datetime", "start_datetime", "end_datetime"}:
        return None
    if isinstance(summary, dict):  # a range: {"minimum": …, "maximum": …}
        low, high = summary.get("minimum"), summary.get("maximum")
        if _number(low) and _number(high) and low != high:
            return Queryable(name, NUMBER)
        return None
    if not isinstance(summary, list) or len(set(map(repr, summary))) < 2:
        return None
    if all(_number(v) for v in summary):
        return Queryable(name, NUMBER)
    if all(isinstance(v, str) for v in summary):
        return Queryable(name, STRING)
    return None


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def wanted(collections: Iterable[tuple[str, dict[str, Any] | None]]) -> dict[Queryable, list[str]]:
    """Queryable → the collections whose summaries call for it. A name numeric in one collection and text in
    another is left out: one wrapper per name (see the module's docstring)."""
    found: dict[str, dict[str, list[str]]] = {}
    for collection_id, summaries in collections:
        for name, summary in (summaries or {}).items():
            queryable = summary_queryable(name, summary)
            if queryable:
                found.setdefault(name, {}).setdefault(queryable.wrapper, []).append(collection_id)
    return {
        Queryable(name, wrapper): sorted(ids)
        for name, by_wrapper in found.items()
        if len(by_wrapper) == 1
        for wrapper, ids in by_wrapper.items()
    }


async def index_summaries(conn: asyncpg.Connection, collection_ids: Iterable[str] | None = None) -> list[str]:
    """Register (or complete) the indexed queryables the summaries of these collections (None: all) call for, in one
    transaction; pgstac then builds the missing indexes. Returns the names of the queryables added or changed."""
    ids = None if collection_ids is None else sorted(set(collection_ids))
    async with conn.transaction():
        await conn.execute("SET LOCAL search_path = pgstac, public")  # pgstac's triggers name its functions so
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('eolake_catalog.index_summaries'))")
        rows = await conn.fetch(
            "SELECT id, (content->'summaries')::text FROM pgstac.collections "
            "WHERE $1::text[] IS NULL OR id = ANY($1::text[])",
            ids,
        )
        found = wanted((row[0], json.loads(row[1]) if row[1] else None) for row in rows)
        return [q.name for q, on in found.items() if await _register(conn, q, on)]


async def _register(conn: asyncpg.Connection, queryable: Queryable, collections: list[str]) -> bool:
    existing = await conn.fetch(
        "SELECT id, collection_ids, property_wrapper, property_index_type "
        "FROM pgstac.queryables WHERE name = $1 ORDER BY collection_ids IS NOT NULL, id",
        queryable.name,
    )
    if not existing:
        await conn.execute(
            "INSERT INTO pgstac.queryables (name, collection_ids, definition, property_wrapper, "
            "property_index_type) VALUES ($1, $2, $3::text::jsonb, $4, 'BTREE')",
            queryable.name,
            collections,
            json.dumps(queryable.definition),
            queryable.wrapper,
        )
        return True
    (row_id, ids, wrapper, index_type), others = existing[0], existing[1:]  # a row for all collections first
    if (wrapper or queryable.wrapper) != queryable.wrapper:
        return False  # declared otherwise by someone: theirs stands
    taken = {c for _, other_ids, _, _ in others for c in other_ids or ()}  # rows of their own for some collections
    merged = None if ids is None else sorted(set(ids) | (set(collections) - taken))
    if merged == (None if ids is None else sorted(ids)) and wrapper and index_type:
        return False
    await conn.execute(
        "UPDATE pgstac.queryables SET collection_ids = $1, property_wrapper = $2, "
        "property_index_type = coalesce(property_index_type, 'BTREE') WHERE id = $3",
        merged,
        queryable.wrapper,
        row_id,
    )
    return True


def index_collections(dsn: str, collection_ids: Iterable[str] | None = None) -> list[str]:
    """index_summaries over a connection of its own ("" DSN: libpq's PG* variables), for synchronous callers."""

    async def run() -> list[str]:
        conn = await asyncpg.connect(dsn or None)
        try:
            return await index_summaries(conn, collection_ids)
        finally:
            await conn.close()

    return asyncio.run(run())


def migrate(dsn: str, app_role: str = "eolake_app") -> None:
    """The write counters of the search cache, and the queryable indexes of the collections already in the database
    (idempotent; run as the app role, or as a superuser who then acts as it)."""
    asyncio.run(_migrate(dsn, app_role))


async def _migrate(dsn: str, app_role: str) -> None:
    conn = await asyncpg.connect(dsn or None)
    try:
        role = await conn.fetchval("SELECT quote_ident($1)", app_role)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA} AUTHORIZATION {role}")
        async with conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {role}")
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('eolake_catalog.migrate'))")
            await conn.execute(WRITE_COUNTERS)
            await conn.execute(PARTITION_AS_ASKED)
            for name, (table, event, rows, function) in COUNTING_TRIGGERS.items():
                await conn.execute(
                    f"CREATE OR REPLACE TRIGGER {name} AFTER {event} ON pgstac.{table} "
                    f"REFERENCING {rows} TABLE AS written FOR EACH STATEMENT "
                    f"EXECUTE FUNCTION {SCHEMA}.{function}()"
                )
        await index_summaries(conn)
    finally:
        await conn.close()


if __name__ == "__main__":  # python -m eolake_catalog.schema DSN [APP_ROLE] ("" DSN: libpq's PG* variables)
    migrate(*sys.argv[1:3])
