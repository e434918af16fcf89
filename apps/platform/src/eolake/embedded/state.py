"""The embedded platform's state directory: database, storage, logs, API keys and what is running."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ROUTES_RELOAD_SECONDS = 0.2  # how often the gateway looks at the routes file: what a drain waits for, at least


@dataclass(frozen=True)
class StateDir:
    root: Path

    @property
    def postgres(self) -> Path:
        return self.root / "postgres"

    @property
    def replica(self) -> Path:
        """The streaming replica of `postgres` (the spec's database.replica)."""
        return self.root / "postgres-replica"

    @property
    def storage(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def broker(self) -> Path:
        return self.root / "rabbitmq"

    @property
    def alertmanager(self) -> Path:
        return self.root / "alertmanager"

    @property
    def alert_outbox(self) -> Path:
        return self.alertmanager / "outbox.jsonl"

    @property
    def api_keys(self) -> Path:
        return self.root / "api-keys.json"

    def key_file(self, role: str) -> Path:
        return self.root / f"{role}.key"

    def signing_key(self) -> str:
        """The platform's signing secret (page tokens), created once, kept 0600 in the state directory only."""
        path = self.root / "signing.key"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return path.read_text().strip()

    @property
    def pid_file(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def children_file(self) -> Path:
        """The supervisor's children (pid, start time), to find any left over should it die."""
        return self.root / "children.json"

    @property
    def routes_file(self) -> Path:
        """The gateway's instances by path prefix, rewritten by the supervisor as they come and go."""
        return self.root / "gateway-routes.json"

    @property
    def upgrade_file(self) -> Path:
        return self.root / "upgrade-request.json"

    @property
    def runtime_file(self) -> Path:
        return self.root / "runtime.json"

    @property
    def demo_marker(self) -> Path:
        return self.root / "demo-loaded"

    def prepare(self) -> None:
        for path in (self.root, self.storage, self.logs):
            path.mkdir(parents=True, exist_ok=True)

    def supervisor_pid(self) -> int | None:
        """The pid of a live supervisor, or None (a stale pid file is ignored, and so is a killed supervisor that
        its parent has not reaped yet: a zombie)."""
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        except PermissionError:
            return pid
        return None if _zombie(pid) else pid

    def runtime(self) -> dict:
        try:
            return json.loads(self.runtime_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def write_runtime(self, runtime: dict) -> None:
        tmp = self.runtime_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(runtime, indent=2))
        os.replace(tmp, self.runtime_file)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
