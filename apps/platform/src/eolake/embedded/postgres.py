"""A private PostgreSQL cluster from the system's binaries: data dir and socket under a state directory.

The database driver is imported where it is used: `eolake status` and `eolake down` only read the pid file.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

SUPERUSER = "eolake"
APP_USER = "eolake_app"  # what services connect as: pgstac's read and ingest rights, no superuser
DATABASE = "eolake"
# Expand/contract: while a running version serves, a migration may add (tables, columns, indexes) but not drop,
# rename or retype what the running code reads. Sessions that set eolake.expand_only are held to it by the database.
EXPAND_ONLY = r"""
CREATE OR REPLACE FUNCTION public.eolake_expand_only() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('eolake.expand_only', true), '') <> 'on' THEN
    RETURN;
  END IF;
  IF TG_EVENT = 'sql_drop' OR current_query() ~* '\mRENAME\M|ALTER\s+COLUMN\s+\S+\s+(SET\s+DATA\s+)?TYPE\M' THEN
    RAISE EXCEPTION 'migration refused while the running version serves: % drops, renames or retypes '
      '(expand/contract: add now, remove in a later release)', TG_TAG USING ERRCODE = 'object_in_use';
  END IF;
END $$;
"""
EXPAND_ONLY_TRIGGERS = {"eolake_expand_only_drop": "sql_drop", "eolake_expand_only_alter": "ddl_command_start"}


MIGRATION_STAMP = "eolake migrated from "
# PostgreSQL shares this machine with the services, the gateway and the page cache their files need.
MACHINE_SHARE = 0.5
DEFAULT_MAX_CONNECTIONS = 200  # the spec's database.max_connections default: clusters started without a spec
# A replica (eolake.embedded.replica) starts with them too: a hot standby needs max_connections (and the worker
# settings) ≥ the primary's. Its replication slot keeps WAL for it, 1 GB at most: a replica gone for good never fills
# the disk.
BASE_SETTINGS = {"fsync": "on", "max_slot_wal_keep_size": "1GB"}


def machine():
    """What the embedded cluster may use: this machine's CPUs and its share of the memory, measured."""
    from eolake_spec.tuning import Machine

    return Machine.measured(share=MACHINE_SHARE)


def server_options(settings: dict[str, str] | None = None) -> str:
    """The `-c` options of a server here: the settings tuned for this machine (eolake_spec.tuning), the base ones,
    then `settings` (a platform passes its spec's, `Database.server_settings`)."""
    from eolake_spec.tuning import postgres_settings

    merged = {**postgres_settings(machine(), DEFAULT_MAX_CONNECTIONS), **BASE_SETTINGS, **(settings or {})}
    return " ".join(f"-c {name}={shlex.quote(value)}" for name, value in merged.items())


def migration_inputs() -> str:
    """A digest of what `migrate()` applies: the pgstac version pypgstac installs, this module (the database's own
    rules and roles) and the source of every installed service that has migrations (its whole package: the SQL may
    live beside the migration step). Any change, and the next start migrates again."""
    import hashlib
    import importlib.util

    from pypgstac import __version__ as pgstac_version

    from eolake_spec import manifests

    digest = hashlib.sha256(pgstac_version.encode())
    files = [Path(__file__)]
    for m in sorted(manifests().values(), key=lambda m: m.name):
        if m.schema and (spec := importlib.util.find_spec(m.schema.split(".")[0])) and spec.origin:
            files += sorted(Path(spec.origin).parent.rglob("*.py")) + sorted(Path(spec.origin).parent.rglob("*.sql"))
    for path in files:
        digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class PostgresError(RuntimeError):
    pass


def find_bindir() -> Path:
    """The newest PostgreSQL server installed under /usr/lib/postgresql (Debian/Ubuntu layout), or PATH."""
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin/initdb")), key=lambda p: int(p.parent.parent.name))
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise PostgresError("PostgreSQL server binaries not found: install postgresql (the ./eolake script does)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """No one listens there (connections left in TIME_WAIT don't count: servers bind with SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class PostgresCluster:
    """One cluster in `root` (data/, run/ for the socket, password, port and log files)."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.data = self.root / "data"
        self.run_dir = self.root / "run"
        self.log = self.root / "postgres.log"
        self.bindir = find_bindir()

    # PostgreSQL refuses to run as root: as root, the cluster belongs to the system's postgres user.
    def owner(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam("postgres")
        except KeyError as exc:
            raise PostgresError("running as root needs the 'postgres' system user (package postgresql)") from exc

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        owner = self.owner()
        kwargs: dict[str, Any] = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []} if owner else {}
        cmd = [str(self.bindir / args[0]), *args[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/", **kwargs)
        if check and proc.returncode != 0:
            raise PostgresError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    @property
    def password(self) -> str:
        return (self.root / "password").read_text().strip()

    @property
    def port_file(self) -> Path:
        return self.root / "port"

    @property
    def port(self) -> int:
        return int(self.port_file.read_text())

    def postmaster_alive(self) -> bool:
        """Whether the server's main process runs (its pid file names it): cheap enough to ask twice a second."""
        return self.postmaster() == "running"

    def postmaster(self) -> str:
        """ "running"; "stopped" (no pid file: a clean stop, perhaps for a restart); "crashed" (a pid file whose
        process is gone: killed)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except FileNotFoundError:
            return "stopped"
        except (ValueError, ProcessLookupError):  # a pid file being written is "running" at the next look
            return "crashed"
        except PermissionError:  # alive, and another user's (the postgres user, when run as root)
            return "running"
        return "running"

    @property
    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def dsn(self, dbname: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def app_dsn(self) -> str:
        password = (self.root / "app-password").read_text().strip()
        return f"postgresql://{APP_USER}:{password}@127.0.0.1:{self.port}/{DATABASE}"

    def _check_reachable(self) -> None:
        owner = self.owner()
        if not owner:
            return
        for parent in self.root.parents:
            st = parent.stat()
            if not (st.st_mode & 0o001 or st.st_uid == owner.pw_uid):
                raise PostgresError(
                    f"{parent} is private (mode {st.st_mode & 0o777:o}): as root the cluster runs as "
                    f"the postgres user, which cannot reach {self.root}"
                )

    def _make_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self._check_reachable()
        self.run_dir.mkdir(exist_ok=True)

    def init(self) -> None:
        if self.initialized:
            return
        self._make_root()
        pwfile = self.root / "password"
        pwfile.write_text(secrets.token_urlsafe(24))
        pwfile.chmod(0o644 if self.owner() else 0o600)
        owner = self.owner()
        for path in (self.root, self.run_dir):
            if owner:
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--pwfile",
            str(pwfile),
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        if owner:
            pwfile.chmod(0o600)
            os.chown(pwfile, 0, 0)

    def start(self, port: int | None = None, settings: dict[str, str] | None = None) -> None:
        """Start on `port`, else on the port used last time if free, else on a free port; `settings`: server
        settings (name: value) over those tuned for this machine (a platform passes its spec's,
        `Database.server_settings`)."""
        import psycopg

        if not self.initialized:
            self.init()
        if self.running:
            return
        portfile = self.root / "port"
        if port is None:
            previous = int(portfile.read_text()) if portfile.exists() else None
            port = previous if previous and port_is_free(previous) else free_port()
        elif not port_is_free(port):
            raise PostgresError(
                f"port {port} for PostgreSQL (database.port) is already in use, perhaps by another "
                "cluster: choose another port, or leave database.port unset for a free one"
            )
        portfile.write_text(str(port))
        opts = f"-p {port} -k {self.run_dir} -c listen_addresses=127.0.0.1 {server_options(settings)}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    @property
    def running(self) -> bool:
        if not self.initialized:
            return False
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def migrate(self) -> str:
        """Create PostGIS and apply pgstac migrations with pypgstac (idempotent); returns the pgstac version."""
        import psycopg.sql
        from pypgstac.db import PgstacDB
        from pypgstac.migrate import Migrate

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
            conn.execute(EXPAND_ONLY)
            for name, event in EXPAND_ONLY_TRIGGERS.items():
                if not conn.execute("SELECT 1 FROM pg_event_trigger WHERE evtname = %s", (name,)).fetchone():
                    conn.execute(
                        psycopg.sql.SQL(
                            "CREATE EVENT TRIGGER {} ON {} EXECUTE FUNCTION public.eolake_expand_only()"
                        ).format(psycopg.sql.Identifier(name), psycopg.sql.SQL(event))
                    )
        with PgstacDB(dsn=self.dsn()) as db:
            version = Migrate(db).run_migration()
        self._ensure_app_role()
        self._migrate_services(self.dsn())
        return version

    def migrate_when_changed(self) -> str | None:
        """`migrate()` unless this database was last migrated from exactly what is installed now (the stamp the
        database keeps, `migration_inputs()`); returns the pgstac version, None when nothing needed doing. A database
        restored from an older backup carries its older stamp, so it is migrated."""
        inputs = migration_inputs()
        if (self.root / "app-password").exists() and self._migration_stamp() == inputs:
            return None
        version = self.migrate()
        import psycopg.sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    psycopg.sql.Identifier(DATABASE), psycopg.sql.Literal(MIGRATION_STAMP + inputs)
                )
            )
        return version

    def _migration_stamp(self) -> str | None:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()"
            ).fetchone()
        comment = row[0] if row else None
        return comment.removeprefix(MIGRATION_STAMP) if comment and comment.startswith(MIGRATION_STAMP) else None

    def migrate_rolling(self) -> str:
        """Migrate while the running version serves; returns the pgstac version.

        Only what the running version tolerates: pgstac within its minor version (its patch releases keep the SQL
        functions the catalog and tiles call; a new minor version, or an older pgstac than the database's, needs
        `eolake down` and `eolake up`), and the services' own migrations only expand (the database refuses their
        drops, renames and type changes, see EXPAND_ONLY)."""
        import psycopg
        from packaging.version import Version
        from pypgstac import __version__ as installed

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            current = conn.execute("SELECT pgstac.get_version()").fetchone()[0]
        have, want = Version(current), Version(installed)
        if want < have:
            raise PostgresError(
                f"pypgstac {installed} is older than the database's pgstac {current}: a downgrade is "
                "not a rolling upgrade"
            )
        if (want.major, want.minor) != (have.major, have.minor):
            raise PostgresError(
                f"pgstac {current} → {installed} is a new minor version, which the running catalog "
                "may not tolerate: stop the platform (`eolake down`) and start it (`eolake up`)"
            )
        return self.migrate_expanding()

    def migrate_expanding(self) -> str:
        from pypgstac.db import PgstacDB
        from pypgstac.migrate import Migrate

        with PgstacDB(dsn=self.dsn()) as db:
            version = Migrate(db).run_migration()
        self._migrate_services(self.expand_only_dsn())
        return version

    def expand_only_dsn(self) -> str:
        """The superuser's DSN for sessions that may only expand the schema."""
        return self.dsn() + "?options=" + quote("-c eolake.expand_only=on")

    def _migrate_services(self, dsn: str) -> None:
        """The installed services' own migrations (their manifests' `schema`: module → migrate(dsn, app_role))."""
        import importlib

        from eolake_spec import manifests

        for m in manifests().values():
            if m.schema:
                importlib.import_module(m.schema).migrate(dsn, APP_USER)

    def bound_app_role(self, options: dict[str, str]) -> None:
        """Session defaults of the services' role (statement, idle-in-transaction and lock timeouts): a backstop
        for connections that do not set their own (each service sets its spec limits on its connections)."""
        import psycopg.sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            for name, value in sorted(options.items()):
                conn.execute(
                    psycopg.sql.SQL("ALTER ROLE {} SET {} = {}").format(
                        psycopg.sql.Identifier(APP_USER), psycopg.sql.Identifier(name), psycopg.sql.Literal(value)
                    )
                )

    def _ensure_app_role(self) -> None:
        import psycopg.sql

        pwfile = self.root / "app-password"
        if not pwfile.exists():
            pwfile.touch(mode=0o600)
            pwfile.write_text(secrets.token_urlsafe(24))
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            password = pwfile.read_text().strip()
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_USER,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                psycopg.sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                    psycopg.sql.SQL(verb), psycopg.sql.Identifier(APP_USER), psycopg.sql.Literal(password)
                )
            )
            conn.execute(psycopg.sql.SQL("GRANT pgstac_ingest TO {}").format(psycopg.sql.Identifier(APP_USER)))
            conn.execute(
                psycopg.sql.SQL("ALTER ROLE {} SET search_path = pgstac, public").format(
                    psycopg.sql.Identifier(APP_USER)
                )
            )
