"""The eolake_database role on a real booted host: PostgreSQL + PostGIS + pgstac, least-privilege roles reachable from
the app host only, idempotent, a streaming standby the app host reads from, and backups with pgBackRest that a
point-in-time restore brings back (RTO, RPO).

The module boots its own db, replica and app hosts (tests/onprem_hosts.py) and applies the role once; every check
reuses them.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from onprem_hosts import test_hosts

from eolake_spec.tuning import Machine, postgres_settings

pytestmark = pytest.mark.timeout(1200)
ROOT = Path(__file__).resolve().parents[1]
PLAYBOOKS = ROOT / "playbooks"
APP_ROLE = "eolake_app"
SITE = """- name: Database only
  hosts: database
  become: true
  roles:
    - role: eolake_database

- name: Its standby
  hosts: database_replica
  become: true
  roles:
    - role: eolake_database
"""
SLOT = "eolake_replica"


class Deployment:
    def __init__(self, hosts, directory: Path):
        self.hosts = hosts
        self.db, self.app, self.replica = hosts["db"], hosts["app"], hosts["replica"]
        self.directory = directory
        self.app_password = secrets.token_urlsafe(18)
        self.variables = {
            "eolake_database_clients": [self.app.address],
            "eolake_database_replication_password": secrets.token_urlsafe(18),
            "eolake_database_owner_password": secrets.token_urlsafe(18),
            "eolake_database_roles": [
                {
                    "name": APP_ROLE,
                    "password": self.app_password,
                    "statement_timeout": "2s",
                    "idle_in_transaction_session_timeout": "3s",
                }
            ],
            "eolake_database_settings": {"shared_buffers": "128MB", "effective_cache_size": "512MB"},
            "eolake_database_archive_timeout": "10s",
            "eolake_database_migrate_python": str(ROOT / ".venv/bin/python"),
        }
        self.write_inventory({"database": ["db"], "database_replica": ["replica"], "app": ["app"]})
        (directory / "site.yml").write_text(SITE)

    def write_inventory(self, groups: dict[str, list[str]]) -> None:
        """The primary and its standbys with their own settings (extra vars would apply to every host)."""
        inventory = self.hosts.inventory(groups)
        standbys = [self.hosts[name] for name in groups["database_replica"]]
        inventory["all"]["hosts"]["db"] |= {
            "eolake_database_listen_address": self.db.address,
            "eolake_database_standbys": [{"slot": f"eolake_{h.name}", "address": h.address} for h in standbys],
        }
        for standby in standbys:
            inventory["all"]["hosts"][standby.name] |= {
                "eolake_database_listen_address": standby.address,
                "eolake_database_primary_address": self.db.address,
                "eolake_database_replication_slot": f"eolake_{standby.name}",
            }
        (self.directory / "inventory.json").write_text(json.dumps(inventory))

    def playbook(self, playbook: Path | str, limit: str = "all", **extra) -> subprocess.CompletedProcess:
        variables = self.directory / "vars.json"
        variables.write_text(json.dumps({**self.variables, **extra}))
        return subprocess.run(
            [
                str(ROOT / ".venv/bin/ansible-playbook"),
                "-i",
                str(self.directory / "inventory.json"),
                "-e",
                f"@{variables}",
                "--limit",
                limit,
                str(playbook),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            env={
                "PATH": f"{ROOT / '.venv/bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME": "/root",
                "ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"),
                "ANSIBLE_NOCOLOR": "1",
            },
        )

    def site(self, limit: str = "all", **extra) -> subprocess.CompletedProcess:
        return self.playbook(self.directory / "site.yml", limit, **extra)

    def app_psql(self, sql: str, check: bool = True, host: str = "db") -> subprocess.CompletedProcess:
        """psql on the app host, as the application role, over the network (to the primary, or `host`)."""
        return self.app.ssh(
            f"PGPASSWORD='{self.app_password}' psql -X -At -v ON_ERROR_STOP=1 "
            f"'host={host} dbname=eolake user={APP_ROLE} connect_timeout=10'",
            input=sql,
            check=check,
        )

    def superuser(self, sql: str) -> str:
        """psql on the database host as postgres (peer authentication)."""
        return self.db.ssh("runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d eolake", input=sql).stdout.strip()


def recap_changed(output: str, host: str) -> int:
    match = re.search(rf"^{host}\s*:.*?changed=(\d+).*?failed=(\d+)", output, re.MULTILINE)
    assert match, output[-3000:]
    assert match.group(2) == "0", output[-3000:]
    return int(match.group(1))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    with test_hosts(("db", "replica", "app")) as hosts:
        deployment = Deployment(hosts, tmp_path_factory.mktemp("onprem-database"))
        started = time.monotonic()
        result = deployment.site()
        print(f"\nfirst run of eolake_database: {time.monotonic() - started:.0f} s")
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
        yield deployment


def test_a_second_run_changes_nothing(deployment):
    started = time.monotonic()
    result = deployment.site()
    print(f"\nsecond run: {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, result.stdout[-5000:]
    assert recap_changed(result.stdout, "db") == 0, result.stdout[-5000:]
    assert recap_changed(result.stdout, "replica") == 0, result.stdout[-5000:]


def test_the_standby_follows_the_primary_and_the_app_host_reads_there(deployment):
    d = deployment
    assert d.app_psql("SELECT pg_is_in_recovery(), current_user;", host="replica").stdout.strip() == f"t|{APP_ROLE}"
    slot = d.superuser(f"SELECT active FROM pg_replication_slots WHERE slot_name = '{SLOT}'")
    assert slot == "t", "the standby streams through its slot"
    token = secrets.token_hex(8)
    d.app_psql(f"CREATE TABLE IF NOT EXISTS standby_probe (token text); INSERT INTO standby_probe VALUES ('{token}');")
    deadline = time.monotonic() + 60
    while (
        "t"
        != d.app_psql(
            f"SELECT EXISTS (SELECT FROM standby_probe WHERE token = '{token}');", host="replica", check=False
        ).stdout.strip()
    ):
        assert time.monotonic() < deadline, "a row written on the primary never reached the standby"
        time.sleep(0.2)
    refused = d.app_psql("INSERT INTO standby_probe VALUES ('on-the-standby');", host="replica", check=False)
    assert refused.returncode != 0 and "read-only transaction" in refused.stderr
    intruder = d.app.ssh(
        f"PGPASSWORD='{d.variables['eolake_database_replication_password']}' "
        "psql -X 'host=db user=eolake_replication dbname=replication replication=true' -c IDENTIFY_SYSTEM",
        check=False,
    )
    assert intruder.returncode != 0 and "no pg_hba.conf entry" in intruder.stderr, "only the standby replicates"


def test_the_app_host_reaches_pgstac_and_postgis_as_the_application_role(deployment):
    facts = deployment.app_psql(
        "SELECT current_user, pgstac.get_version(), postgis_version() IS NOT NULL, "
        "current_setting('statement_timeout'), "
        "current_setting('idle_in_transaction_session_timeout');"
    ).stdout.strip()
    pypgstac = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-c", "import pypgstac; print(pypgstac.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert facts == f"{APP_ROLE}|{pypgstac}|t|2s|3s"
    assert deployment.app_psql("SELECT count(*) FROM pgstac.collections;").stdout.strip() == "0"


def test_nobody_else_connects_over_the_network(deployment):
    db = deployment.db.address
    with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry"):  # this machine, the app role
        psycopg.connect(host=db, dbname="eolake", user=APP_ROLE, password=deployment.app_password, connect_timeout=5)
    owner_password = deployment.variables["eolake_database_owner_password"]
    owner = deployment.app.ssh(
        f"PGPASSWORD='{owner_password}' psql -X 'host=db dbname=eolake user=eolake_owner' -c 'SELECT 1'", check=False
    )
    assert owner.returncode != 0 and "no pg_hba.conf entry" in owner.stderr
    wrong = deployment.app.ssh(
        "PGPASSWORD=wrong psql -X 'host=db dbname=eolake user=eolake_app' -c 'SELECT 1'", check=False
    )
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
    listening = deployment.db.ssh("ss -Hltn 'sport = :5432'").stdout.split()
    assert sorted(a for a in listening if ":5432" in a) == sorted([f"{db}:5432", "127.0.0.1:5432", "[::1]:5432"])


def test_the_application_role_has_least_privileges(deployment):
    attributes = deployment.superuser(
        f"SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
        f"FROM pg_roles WHERE rolname = '{APP_ROLE}'"
    )
    assert attributes == "f|f|f|f|f"
    for forbidden in (
        "CREATE ROLE intruder;",
        "CREATE DATABASE other;",
        "ALTER SYSTEM SET work_mem = '1GB';",
        "COPY (SELECT 1) TO PROGRAM 'id';",
    ):
        refused = deployment.app_psql(forbidden, check=False)
        assert refused.returncode != 0, forbidden
        assert re.search("permission denied|must be superuser", refused.stderr, re.IGNORECASE), refused.stderr
    assert deployment.superuser("SELECT has_database_privilege('public', 'eolake', 'CONNECT')") == "f"


def test_timeouts_are_enforced_per_role(deployment):
    slow = deployment.app_psql("SELECT pg_sleep(5);", check=False)
    assert slow.returncode != 0 and "statement timeout" in slow.stderr
    idle = deployment.app_psql("BEGIN;\nSELECT 1;\n\\! sleep 4\nSELECT 2;\n", check=False)
    assert idle.returncode != 0 and "idle-in-transaction timeout" in idle.stderr


def test_settings_archiving_and_backup_timers(deployment):
    settings = deployment.superuser(
        "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings "
        "WHERE name IN ('archive_mode', 'shared_buffers', 'password_encryption', "
        "'wal_level', 'max_connections')"
    )
    assert settings == (
        "archive_mode=on max_connections=200 password_encryption=scram-sha-256 shared_buffers=16384 wal_level=replica"
    )
    # The rest follows the host's memory and CPUs, by the rule every target uses.
    memory_kib = int(deployment.db.ssh("awk '/^MemTotal/ {print $2}' /proc/meminfo").stdout)
    cpus = int(deployment.db.ssh("grep -c ^processor /proc/cpuinfo").stdout)
    derived = postgres_settings(Machine(memory=memory_kib // 1024 * 2**20, cpus=cpus), 200)
    shown = {name: deployment.superuser(f"SHOW {name}") for name in ("work_mem", "jit", "max_parallel_workers")}
    assert shown == {name: derived[name] for name in shown}
    timers = deployment.db.ssh("systemctl is-enabled eolake-backup-full.timer eolake-backup-diff.timer").stdout
    assert timers.split() == ["enabled", "enabled"]
    info = json.loads(deployment.db.ssh("runuser -u postgres -- pgbackrest --stanza=eolake --output=json info").stdout)
    assert info[0]["status"]["code"] == 0 and info[0]["backup"][0]["type"] == "full"


def test_point_in_time_restore_brings_back_the_state_before_a_write(deployment):
    d = deployment
    d.app_psql(
        "CREATE TABLE IF NOT EXISTS public_events (name text PRIMARY KEY, at timestamptz DEFAULT now());"
        "INSERT INTO public_events (name) VALUES ('before-backup');"
    )
    backup = d.db.ssh("systemctl start eolake-backup@diff.service && systemctl show -P Result eolake-backup@diff")
    assert backup.stdout.strip() == "success"
    d.app_psql("INSERT INTO public_events (name) VALUES ('kept');")
    target = d.superuser("SELECT clock_timestamp()")
    d.app_psql("INSERT INTO public_events (name) VALUES ('lost');")
    segment = d.superuser("SELECT pg_walfile_name(pg_current_wal_lsn())")
    written = time.monotonic()

    def archived() -> bool:  # archive_timeout (10 s here) switches to a new segment: the write reaches the repo
        last = d.superuser("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        return last >= segment

    wait = time.monotonic()
    while not archived():
        assert time.monotonic() - wait < 120, "the WAL of the last write never reached the repository"
        time.sleep(0.5)
    rpo = time.monotonic() - written

    started = time.monotonic()
    restore = d.playbook(PLAYBOOKS / "restore.yml", eolake_database_restore_target=target)
    rto = time.monotonic() - started
    assert restore.returncode == 0, restore.stdout[-5000:] + restore.stderr[-2000:]
    print(
        f"\nRPO {rpo:.1f} s (a commit until its WAL segment is in the repository; bound: archive_timeout 10 s)"
        f"\nRTO {rto:.1f} s (restore.yml: stop, pgBackRest --delta restore to the target time, replay, promotion)"
    )
    rows = d.app_psql("SELECT string_agg(name, ',' ORDER BY name) FROM public_events;").stdout.strip()
    assert rows == "before-backup,kept"
    assert d.superuser("SELECT pg_is_in_recovery()") == "f"
    assert d.app_psql("SELECT pgstac.get_version();").stdout.strip()
    d.app_psql("INSERT INTO public_events (name) VALUES ('after-restore');")  # writable on the new timeline


def test_after_a_host_restart_the_database_and_the_backup_timers_come_back_by_themselves(deployment):
    deployment.app_psql("CREATE TABLE IF NOT EXISTS restart_probe (n int); INSERT INTO restart_probe VALUES (1);")
    deployment.db.restart()
    assert deployment.app_psql("SELECT sum(n) FROM restart_probe;").stdout.strip() == "1"
    timers = deployment.db.ssh("systemctl is-active eolake-backup-full.timer eolake-backup-diff.timer").stdout
    assert timers.split() == ["active", "active"]


def test_a_cluster_with_data_of_its_own_is_never_replaced_by_a_clone(deployment):
    """The app host's PostgreSQL holds someone's database: named as a standby, the role stops and keeps it."""
    d = deployment
    d.app.ssh(
        "pg_createcluster 15 main --start && runuser -u postgres -- psql -X -q -c 'CREATE DATABASE precious' "
        "&& runuser -u postgres -- psql -X -q -d precious -c 'CREATE TABLE kept (n int)'"
    )
    d.write_inventory({"database": ["db"], "database_replica": ["app"], "app": ["app"]})
    try:
        result = d.site(limit="app")  # the check comes before anything the primary would have to provide
    finally:
        d.write_inventory({"database": ["db"], "database_replica": ["replica"], "app": ["app"]})
    assert result.returncode != 0 and "is never replaced" in result.stdout, result.stdout[-3000:]
    kept = d.app.ssh("runuser -u postgres -- psql -X -At -d precious -c 'SELECT count(*) FROM kept'")
    assert kept.stdout.strip() == "0"
    assert "standby.signal" not in d.app.ssh("ls /var/lib/postgresql/15/main").stdout


def test_missing_passwords_stop_the_role_with_a_message(deployment):
    result = deployment.site(eolake_database_owner_password="")
    assert result.returncode != 0 and "set eolake_database_owner_password" in result.stdout


def test_a_restore_without_target_time_is_refused_before_anything_stops(deployment):
    result = deployment.playbook(PLAYBOOKS / "restore.yml")
    assert result.returncode != 0 and "set eolake_database_restore_target" in result.stdout
    assert deployment.db.ssh("systemctl is-active postgresql@15-main").stdout.strip() == "active"
