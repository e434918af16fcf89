"""What makes a warm `eolake up` quick without skipping what changed: migrations run only when their inputs differ
from those the database was last migrated from."""

from __future__ import annotations

import psycopg

from eolake.embedded.postgres import MIGRATION_STAMP, migration_inputs


def stamp(pg) -> str | None:
    with psycopg.connect(pg.dsn()) as conn:
        return conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]


def test_migrations_are_skipped_only_while_nothing_changed(pg):
    pg.migrate_when_changed()  # whatever the session did before: now stamped with what is installed
    assert stamp(pg) == MIGRATION_STAMP + migration_inputs()
    assert pg.migrate_when_changed() is None

    # A database restored from a backup taken before an upgrade carries the stamp of then: it is migrated again.
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(f"COMMENT ON DATABASE eolake IS '{MIGRATION_STAMP}an older release'")
    assert pg.migrate_when_changed()
    assert stamp(pg) == MIGRATION_STAMP + migration_inputs()
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("COMMENT ON DATABASE eolake IS NULL")
    assert pg.migrate_when_changed()  # never stamped (an older eolake made it): migrated
    assert pg.migrate_when_changed() is None


def test_the_migration_inputs_follow_the_services_sources(tmp_path, monkeypatch):
    """The digest covers the source of every service with migrations: editing one changes it."""
    import importlib.util
    import shutil
    import sys

    before = migration_inputs()
    origin = importlib.util.find_spec("eolake_catalog").origin
    copy = tmp_path / "eolake_catalog"
    shutil.copytree(origin.rsplit("/", 1)[0], copy)
    (copy / "schema.py").write_text((copy / "schema.py").read_text() + "\n# changed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n == "eolake_catalog" or n.startswith("eolake_catalog.")]:
        monkeypatch.delitem(sys.modules, name)
    importlib.invalidate_caches()
    assert migration_inputs() != before
