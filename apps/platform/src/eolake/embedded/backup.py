"""Backups of the embedded cluster with pgBackRest (Debian package pgbackrest): continuous WAL archiving, base
backups on a schedule or on demand, retention, and a point-in-time restore.

Everything lives under the state directory (backups/: the repository, pgbackrest.conf, logs, locks), so the
machine's own /etc/pgbackrest.conf and /var/lib/pgbackrest are never touched. As root the cluster runs as the
postgres user, which then owns the repository too (archive_command runs as that user).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from eolake.embedded.postgres import SUPERUSER, PostgresCluster

STANZA = "eolake"
KINDS = ("full", "diff", "incr")


class BackupError(RuntimeError):
    pass


def find_pgbackrest() -> str | None:
    return shutil.which("pgbackrest") or shutil.which("pgbackrest", path="/usr/bin")


@dataclass(frozen=True)
class BackupSet:
    label: str
    kind: str
    started: datetime
    stopped: datetime
    size: int  # bytes in the repository


@dataclass
class Backups:
    """pgBackRest for one PostgresCluster; `root` holds its repository and configuration."""

    cluster: PostgresCluster
    root: Path
    retention_full: int = 2

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.config = self.root / "pgbackrest.conf"
        self.binary = find_pgbackrest()

    @property
    def available(self) -> bool:
        return self.binary is not None

    def archive_settings(self) -> dict[str, str]:
        """PostgreSQL settings that ship every WAL segment to the repository (a restart applies archive_mode)."""
        command = f"{self.binary} --config={self.config} --stanza={STANZA} archive-push %p"
        return {"wal_level": "replica", "archive_mode": "on", "archive_command": command, "archive_timeout": "60"}

    def configure(self) -> None:
        """Write pgbackrest.conf for the cluster's current port; create the folders, owned like the cluster."""
        if not self.available:
            raise BackupError("pgBackRest is not installed (apt-get install pgbackrest; ./eolake installs it)")
        folders = [self.root / name for name in ("repo", "log", "lock", "spool")]
        for folder in (self.root, *folders):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o750)
            self._own(folder)
        self.config.write_text(
            "\n".join(
                [
                    "# Written by eolake at every start of the embedded platform; edit the stack, not this file.",
                    "[global]",
                    f"repo1-path={self.root / 'repo'}",
                    f"repo1-retention-full={self.retention_full}",
                    f"log-path={self.root / 'log'}",
                    f"lock-path={self.root / 'lock'}",
                    f"spool-path={self.root / 'spool'}",
                    "log-level-console=warn",
                    "log-level-file=info",
                    "start-fast=y",
                    "compress-type=lz4",
                    f"[{STANZA}]",
                    f"pg1-path={self.cluster.data}",
                    f"pg1-port={self.cluster.port}",
                    f"pg1-socket-path={self.cluster.run_dir}",
                    f"pg1-user={SUPERUSER}",
                    "",
                ]
            )
        )
        self.config.chmod(0o640)
        self._own(self.config)

    def _own(self, path: Path) -> None:
        owner = self.cluster.owner()
        if owner:
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def _run(self, *args: str, timeout: float = 3600) -> str:
        owner = self.cluster.owner()
        kwargs: dict[str, Any] = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []} if owner else {}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": self.cluster.password}
        cmd = [str(self.binary), f"--config={self.config}", f"--stanza={STANZA}", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/", env=env, timeout=timeout, **kwargs)
        if proc.returncode != 0:
            message = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            raise BackupError(f"pgbackrest {args[-1]} failed: {message[-1] if message else proc.returncode}")
        return proc.stdout

    def ensure_stanza(self) -> None:
        """Create the repository's stanza once (pgBackRest checks the cluster and the archive command)."""
        self._run("stanza-create")

    def backup(self, kind: str = "full") -> BackupSet:
        if kind not in KINDS:
            raise BackupError(f"backup kind {kind!r} is not one of {', '.join(KINDS)}")
        self._run(f"--type={kind}", "backup")
        return self.sets()[-1]

    def sets(self) -> list[BackupSet]:
        """The backups in the repository, oldest first."""
        info = json.loads(self._run("--output=json", "info"))
        stanza: dict[str, Any] = next((s for s in info if s.get("name") == STANZA), {"backup": []})
        return [
            BackupSet(
                b["label"],
                b["type"],
                _utc(b["timestamp"]["start"]),
                _utc(b["timestamp"]["stop"]),
                int(b.get("info", {}).get("repository", {}).get("delta", 0)),
            )
            for b in stanza.get("backup", [])
        ]

    def restore(self, target: datetime) -> float:
        """Bring the stopped cluster back to `target` (a time after the oldest backup ended); returns seconds.

        The cluster replays the archived WAL up to the target, then promotes and takes writes again."""
        self.check_target(target)
        if self.cluster.running:
            raise BackupError("the cluster is running: stop it before a restore")
        started = time.monotonic()
        stamp = target.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "+00"  # pgBackRest's format, in ms
        self._run("--delta", "--type=time", f"--target={stamp}", "--target-action=promote", "restore")
        self.cluster.start(settings=self.archive_settings())
        self._wait_promoted()
        return time.monotonic() - started

    def check_target(self, target: datetime) -> None:
        """Refuse a target no backup can reach, before anything is stopped."""
        if target.tzinfo is None:
            raise BackupError("the restore target needs a time zone, e.g. 2026-11-29T23:50:00+00:00")
        if target > datetime.now(UTC):
            raise BackupError(f"the restore target {target.isoformat()} is in the future")
        sets = self.sets()
        # pgBackRest keeps a backup's stop time in whole seconds: a target in that second reaches no backup.
        if not sets or target < sets[0].stopped + timedelta(seconds=1):
            first = sets[0].stopped.isoformat() if sets else "none"
            raise BackupError(f"no backup ended before {target.isoformat()} (the oldest ended: {first})")

    def _wait_promoted(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with psycopg.connect(self.cluster.dsn("postgres"), autocommit=True) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return
            time.sleep(0.2)
        raise BackupError(f"the restored cluster was still recovering after {timeout:.0f} s")


def _utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class Schedule:
    """Base backups every `every_hours` (a full one when none is younger than `full_every` intervals, else a
    differential), run by the supervisor in a thread; its metrics are served on a loopback port for Prometheus."""

    def __init__(self, backups: Backups, every_hours: float, full_every: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.backups, self.interval, self.full_every = backups, every_hours * 3600, full_every
        self.registry = CollectorRegistry()
        self.last_success = Gauge(
            "eolake_backup_last_success_timestamp_seconds",
            "when the newest base backup in the repository ended",
            registry=self.registry,
        )
        self.last_failure = Gauge(
            "eolake_backup_last_failure_timestamp_seconds", "when a base backup last failed", registry=self.registry
        )
        self.last_size = Gauge(
            "eolake_backup_last_size_bytes", "size of the newest base backup in the repository", registry=self.registry
        )
        self.interval_gauge = Gauge(
            "eolake_backup_interval_seconds", "the schedule's interval between base backups", registry=self.registry
        )
        self.runs = Counter(
            "eolake_backup_runs", "base backups run, by kind and outcome", ["kind", "outcome"], registry=self.registry
        )
        self.interval_gauge.set(self.interval)
        for kind in KINDS:
            for outcome in ("succeeded", "failed"):
                self.runs.labels(kind, outcome)

    def serve_metrics(self) -> str:
        """Start the metrics endpoint on a free loopback port; returns host:port."""
        from prometheus_client import start_http_server

        from eolake.embedded.postgres import free_port

        port = free_port()
        start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return f"127.0.0.1:{port}"

    def due(self, sets: list[BackupSet], now: datetime) -> str | None:
        """The kind of backup to take now, or None."""
        if sets and (now - sets[-1].stopped).total_seconds() < self.interval:
            return None
        fulls = [s for s in sets if s.kind == "full"]
        if not fulls or (now - fulls[-1].stopped).total_seconds() >= self.interval * self.full_every:
            return "full"
        return "diff"

    def tick(self) -> None:
        """Take the backup that is due, if any, and update the metrics (a failure is logged and counted)."""
        import logging

        log, kind = logging.getLogger("eolake.backup"), "full"
        try:
            sets = self.backups.sets()
            due = self.due(sets, datetime.now(UTC))
            if due:
                kind = due
                log.info("base backup (%s) starting", kind)
                taken = self.backups.backup(kind)
                self.runs.labels(kind, "succeeded").inc()
                log.info("base backup (%s) done", kind, extra={"label": taken.label, "bytes": taken.size})
                sets = self.backups.sets()
        except (BackupError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
            self.runs.labels(kind, "failed").inc()
            self.last_failure.set(time.time())
            log.error("base backup failed: %s", exc)
            return
        if sets:
            self.last_success.set(sets[-1].stopped.timestamp())
            self.last_size.set(sets[-1].size)
