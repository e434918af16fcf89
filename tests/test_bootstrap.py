"""The bootstrap (`./eolake`) and eolake's own PostgreSQL cluster leave a PostgreSQL they did not create alone.

A "foreign" cluster (someone else's, on 5432 when that port is free: the realistic case) runs while `./eolake`
bootstraps, starts the platform (a small stack: the catalog and the gateway; eolake's cluster and its migrations),
reports status and stops it. The foreign cluster must still run as the same process with the same configuration,
and eolake's cluster must have taken another port and kept it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from eolake.embedded.postgres import PostgresCluster, find_bindir, free_port, port_is_free
from servers import catalog_only_stack

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = ROOT / "eolake"
CONFIG_FILES = ("postgresql.conf", "pg_hba.conf", "postgresql.auto.conf", "pg_ident.conf")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


class ForeignCluster:
    """A cluster eolake did not create: initdb'd into `root` (as the postgres user when run as root)."""

    def __init__(self, root: Path, port: int):
        self.root, self.port, self.data = root, port, root / "data"
        self.bindir = find_bindir()

    def _run(self, *args: str) -> None:
        owner = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
        subprocess.run([str(self.bindir / args[0]), *args[1:]], check=True, capture_output=True, cwd="/", **owner)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "someone", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1",
            "start",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def fingerprint(self) -> dict[str, str]:
        return {name: hashlib.sha256((self.data / name).read_bytes()).hexdigest() for name in CONFIG_FILES}

    def answers(self) -> bool:
        with psycopg.connect(host="127.0.0.1", port=self.port, user="someone", dbname="postgres") as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)


@pytest.fixture
def foreign():
    # Not under pytest's tmp_path: that is private (0700), and as root PostgreSQL runs as the postgres user.
    root = Path(tempfile.mkdtemp(prefix="eolake-foreign-pg-"))
    root.chmod(0o755)
    cluster = ForeignCluster(root, 5432 if port_is_free(5432) else free_port())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def eolake(state: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [str(BOOTSTRAP), "--state-dir", str(state), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def describe(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def test_bootstrap_and_platform_leave_a_foreign_cluster_alone(foreign, tmp_path):
    pid, fingerprint, registered = foreign.pid, foreign.fingerprint(), distribution_clusters()
    root = Path(tempfile.mkdtemp(prefix="eolake-bootstrap-"))
    root.chmod(0o755)
    state, stack = root / "state", catalog_only_stack(tmp_path / "Pulumi.bootstrap.yaml", "bootstrap-test")
    # eolake's cluster remembers a port that someone else has taken since: it must move, not take it back.
    (state / "postgres").mkdir(parents=True)
    (state / "postgres" / "port").write_text(str(foreign.port))
    (state / "demo-loaded").write_text("{}")  # no demo data: this test is about the bootstrap and the cluster
    try:
        status = eolake(state, "status")
        assert status.returncode == 3 and "not running" in status.stdout, describe(status)
        assert "installing" not in status.stderr, (
            f"the bootstrap installed something on a ready machine:\n{status.stderr}"
        )

        up = eolake(state, "up", "--stack", str(stack), "--port", str(free_port()))
        assert up.returncode == 0, describe(up) + _tail(state / "logs" / "supervisor.log")
        database_port = json.loads((state / "runtime.json").read_text())["database_port"]
        assert database_port != foreign.port
        assert (state / "postgres" / "port").read_text() == str(database_port)

        status = eolake(state, "status")
        assert status.returncode == 0, describe(status)
        assert f"127.0.0.1:{database_port}" in status.stdout

        killed_service_comes_back_within_its_bound(state)

        down = eolake(state, "down")
        assert down.returncode == 0, describe(down)

        # Started again, eolake's cluster comes back on the port it chose (stable across restarts).
        ours = PostgresCluster(state / "postgres")
        ours.start()
        try:
            assert ours.port == database_port
        finally:
            ours.stop()
        assert not ours.running
    finally:
        if PostgresCluster(state / "postgres").running:
            eolake(state, "down")
            PostgresCluster(state / "postgres").stop()
        shutil.rmtree(root, ignore_errors=True)

    assert foreign.pid == pid and _alive(pid), "the foreign cluster was stopped or restarted"
    assert foreign.fingerprint() == fingerprint, "the foreign cluster's configuration changed"
    assert foreign.answers()
    assert distribution_clusters() == registered, "a cluster of the distribution (pg_lsclusters) changed state"


def test_status_and_down_load_neither_web_framework_nor_database_driver(tmp_path):
    """Every `./eolake` call runs the CLI: `status` and `down` of a stopped platform read a few files and the pid
    table, so they must not import what a service needs (importing the supervisor once cost two seconds)."""
    probe = (
        "import sys\n"
        "from eolake.cli import main\n"
        "codes = [main(['--state-dir', sys.argv[1], command]) for command in ('status', 'down')]\n"
        "heavy = {'fastapi', 'starlette', 'psycopg', 'httpx', 'pydantic', 'eolake_kit', 'eolake_spec'}\n"
        "print(codes, sorted(heavy & set(sys.modules)))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, describe(run)
    assert run.stdout.splitlines()[-1] == "[3, 0] []", describe(run)


def distribution_clusters() -> list[str]:
    """The clusters postgresql-common manages (the distribution's default one among them), with their state: the
    bootstrap once stopped the one that was online."""
    if not shutil.which("pg_lsclusters"):
        return []
    return sorted(
        subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout.splitlines()
    )


def killed_service_comes_back_within_its_bound(state: Path) -> None:
    """The catalog runs under its spec memory bound; killed as the kernel kills a process past it (SIGKILL), the
    supervisor starts it again and it answers /readyz."""
    runtime = json.loads((state / "runtime.json").read_text())
    catalog = runtime["services"]["catalog"]
    assert catalog["memory_limit"] == 2**30  # the spec's default resources.memory_limit, 1Gi
    if runtime["memory_bound"].startswith("cgroup"):
        group = next(
            line.split(":", 2)[2]
            for line in Path(f"/proc/{catalog['pid']}/cgroup").read_text().splitlines()
            if "memory" in line.split(":")[1].split(",") or line.startswith("0::")
        )
        assert group.endswith(f"/eolake-{runtime['pid']}/catalog")
    os.kill(catalog["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 120
    while True:
        restarted = json.loads((state / "runtime.json").read_text())["services"]["catalog"]
        if restarted["pid"] != catalog["pid"] and _ready(restarted["upstream"] + "/readyz"):
            break
        assert time.monotonic() < deadline, "the killed catalog did not come back"
        time.sleep(0.5)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.TransportError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(path: Path, lines: int = 30) -> str:
    return "\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
