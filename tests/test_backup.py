"""Backups of the embedded cluster (eolake.embedded.backup): WAL archiving, base backups, and a point-in-time
restore that brings back exactly what was committed before the target. A real cluster and the real pgBackRest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from eolake.embedded.backup import BackupError, Backups, find_pgbackrest
from eolake.embedded.postgres import PostgresCluster, free_port
from servers import catalog_only_stack, wait_until

pytestmark = pytest.mark.skipif(not find_pgbackrest(), reason="pgBackRest (Debian package pgbackrest) missing")


@pytest.fixture(scope="module")
def backed_up():
    root = Path(tempfile.mkdtemp(prefix="eolake-test-backup-"))
    root.chmod(0o755)
    cluster = PostgresCluster(root / "postgres")
    backups = Backups(cluster, root / "backups")
    try:
        cluster.init()
        cluster.start()
        backups.configure()  # needs the port: the first start is without archiving
        cluster.stop()
        cluster.start(settings=backups.archive_settings())
        backups.ensure_stanza()
        yield cluster, backups
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


def execute(cluster: PostgresCluster, sql: str, *params) -> list[tuple]:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def archived(cluster: PostgresCluster) -> None:
    """Close the current WAL segment and wait until PostgreSQL reports it archived."""
    segment = execute(cluster, "SELECT pg_walfile_name(pg_switch_wal())")[0][0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        last, failed = execute(cluster, "SELECT last_archived_wal, failed_count FROM pg_stat_archiver")[0]
        if last and last >= segment:
            return
        time.sleep(0.2)
    raise AssertionError(f"{segment} not archived within 60 s (failures: {failed})")


def test_a_point_in_time_restore_keeps_what_came_before_and_drops_what_came_after(backed_up):
    cluster, backups = backed_up
    execute(cluster, "CREATE TABLE orders (id int PRIMARY KEY, note text)")
    execute(cluster, "INSERT INTO orders VALUES (1, 'before the backup')")
    full = backups.backup("full")
    assert full.kind == "full" and full.size > 0
    execute(cluster, "INSERT INTO orders VALUES (2, 'after the backup, before the target')")
    archived(cluster)
    # A restore target must lie past the second the backup ended in (pgBackRest keeps whole seconds).
    assert wait_until(lambda: datetime.now(UTC) >= full.stopped + timedelta(seconds=1), 5)
    target = datetime.now(UTC)
    time.sleep(0.01)  # strictly after the target, whatever the clock's resolution
    execute(cluster, "INSERT INTO orders VALUES (3, 'after the target')")
    archived(cluster)
    lost_at = datetime.now(UTC)
    cluster.stop()

    rto = backups.restore(target)
    rows = [r[0] for r in execute(cluster, "SELECT id FROM orders ORDER BY id")]
    print(
        f"restore (RTO) {rto:.1f} s; RPO: writes archived within archive_timeout 60 s, here "
        f"{(lost_at - target).total_seconds():.2f} s of writes after the target dropped by design"
    )
    assert rows == [1, 2]
    execute(cluster, "INSERT INTO orders VALUES (4, 'the restored cluster takes writes')")
    assert [s.kind for s in backups.sets()] == ["full"]


@pytest.mark.parametrize(
    "target, message",
    [
        (datetime(2000, 1, 1, tzinfo=UTC), "no backup ended before"),
        (datetime.now(UTC) + timedelta(days=1), "in the future"),
        (datetime(2030, 1, 1), "time zone"),
    ],
)
def test_bad_restore_targets_are_refused_before_anything_changes(backed_up, target, message):
    cluster, backups = backed_up
    before = execute(cluster, "SELECT count(*) FROM pg_class")[0][0] if cluster.running else None
    with pytest.raises(BackupError, match=message):
        backups.restore(target)
    assert cluster.running and execute(cluster, "SELECT count(*) FROM pg_class")[0][0] == before


def test_a_restore_while_running_is_refused(backed_up):
    cluster, backups = backed_up
    with pytest.raises(BackupError, match="running"):
        backups.restore(datetime.now(UTC) - timedelta(seconds=1))
    assert cluster.running


def cli(state: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "EOLAKE_STATE_DIR": str(state), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "eolake.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_backup_and_restore_commands_on_a_running_platform(tmp_path):
    root = Path(tempfile.mkdtemp(prefix="eolake-test-backup-cli-"))
    root.chmod(0o755)
    state = root / "state"
    state.mkdir()
    (state / "demo-loaded").write_text("{}")  # the restore is about the database, not the demo data
    try:
        up = cli(
            state,
            "up",
            "--stack",
            str(catalog_only_stack(tmp_path / "Pulumi.backup.yaml", "backup-test")),
            "--port",
            str(free_port()),
        )
        assert up.returncode == 0, up.stdout + up.stderr
        cluster = PostgresCluster(state / "postgres")
        assert wait_until(lambda: "full" in cli(state, "backup", "--list").stdout, 120), "no backup at start"
        execute(cluster, "CREATE TABLE notes (id int)")
        execute(cluster, "INSERT INTO notes VALUES (1)")
        diff = cli(state, "backup", "--kind", "diff")
        assert diff.returncode == 0 and "diff" in diff.stdout, diff.stdout + diff.stderr
        archived(cluster)
        target = datetime.now(UTC)
        time.sleep(0.01)
        execute(cluster, "INSERT INTO notes VALUES (2)")
        archived(cluster)

        refused = cli(state, "restore", "--to", "2001-01-01T00:00:00+00:00")
        assert refused.returncode == 2 and "no backup ended before" in refused.stderr
        assert cli(state, "status").returncode == 0, "a refused restore must leave the platform running"

        restored = cli(state, "restore", "--to", target.isoformat())
        assert restored.returncode == 0, restored.stdout + restored.stderr
        print(restored.stdout.strip())
        assert [r[0] for r in execute(cluster, "SELECT id FROM notes ORDER BY id")] == [1]
        assert cli(state, "status").returncode == 0, "the platform is back and ready after the restore"
    finally:
        cli(state, "down")
        PostgresCluster(state / "postgres").stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)
