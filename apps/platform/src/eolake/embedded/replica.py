"""A streaming replica of the private cluster: a base backup of it (pg_basebackup -R) in its own directory, on its
own port, a hot standby the services read from (eolake_kit.replicas)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from eolake.embedded.postgres import (
    APP_USER,
    DATABASE,
    SUPERUSER,
    PostgresCluster,
    PostgresError,
    free_port,
    port_is_free,
    server_options,
)
from eolake.embedded.processes import wait_until

CATCH_UP_SECONDS = 60
SLOT = "eolake_replica"


class StreamingReplica(PostgresCluster):
    """`root` holds the replica as PostgresCluster holds a cluster; its roles and passwords are the primary's."""

    def __init__(self, root: Path, primary: PostgresCluster) -> None:
        super().__init__(root)
        self.primary = primary

    def init(self) -> None:
        """A base backup of the primary, streaming the WAL written meanwhile, set up to follow it (-R) through a
        replication slot (-C -S): the primary keeps the WAL the replica has not received, also while the replica is
        stopped and the primary checkpoints (`eolake down` then `up`), up to max_slot_wal_keep_size."""
        if self.initialized:
            return
        self._make_root()
        for name in ("password", "app-password"):  # the application role's, once the primary is migrated
            if (self.primary.root / name).exists():
                shutil.copy2(self.primary.root / name, self.root / name)
        owner = self.owner()
        if owner:
            for path in (self.root, self.run_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._drop_slot()
        primary = f"postgresql://{SUPERUSER}:{self.primary.password}@127.0.0.1:{self.primary.port}/postgres"
        self._run(
            "pg_basebackup",
            f"--dbname={primary}?connect_timeout=10",
            "-D",
            str(self.data),
            "-X",
            "stream",
            "-c",
            "fast",
            "-R",
            "-C",
            "-S",
            SLOT,
        )

    def discard(self) -> None:
        """Stopped, its slot dropped on the primary (which keeps no more WAL for it) and its directory removed."""
        self.stop(mode="immediate")
        self._drop_slot()
        shutil.rmtree(self.root, ignore_errors=True)

    def _drop_slot(self) -> None:
        """The slot of a replica made before this one (its directory removed): a new base backup starts afresh."""
        import psycopg

        with psycopg.connect(self.primary.dsn(), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (SLOT,)
            )

    @staticmethod
    def app_dsn_in(root: Path) -> str:
        """The application role's DSN of the replica in `root` (started: its port file is written)."""
        password = (root / "app-password").read_text().strip()
        return f"postgresql://{APP_USER}:{password}@127.0.0.1:{(root / 'port').read_text().strip()}/{DATABASE}"

    def start(self, port: int | None = None, settings: dict[str, str] | None = None) -> None:
        """Start as a hot standby on `port`, else on the port of last time if free, else on a free one; returns once
        it is in recovery and has replayed what the primary had written when it started (so a first read finds the
        migrated database)."""
        import psycopg

        self.init()
        if not self.running:
            if port is None:
                previous = self.port if self.port_file.exists() else None
                port = previous if previous and port_is_free(previous) else free_port()
            elif not port_is_free(port):
                raise PostgresError(f"port {port} for the read replica (database.replica.port) is already in use")
            self.port_file.write_text(str(port))
            opts = f"-p {port} -k {self.run_dir} -c listen_addresses=127.0.0.1 -c hot_standby=on "
            opts += server_options(settings)
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")
        with psycopg.connect(self.primary.dsn(), autocommit=True) as conn:
            target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        self.wait_replayed(target)

    def wait_replayed(self, position: str, timeout: float = CATCH_UP_SECONDS) -> None:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:

            def replayed() -> bool:
                standby, done = conn.execute(
                    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() >= %s::pg_lsn", (position,)
                ).fetchone()
                if not standby:
                    raise PostgresError(f"{self.root} is not a standby: it was promoted, or never made a replica")
                return done

            if not wait_until(replayed, timeout, interval=0.05):
                raise PostgresError(f"the replica in {self.root} has not replayed {position} in {timeout:.0f} s")
