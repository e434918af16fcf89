"""The test hosts harness itself: booted systemd hosts with their own identity, network, disk and SSH access."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import onprem_hosts as harness
import pytest
from onprem_hosts import (
    STATE,
    HostsUnavailable,
    check_machine,
    claim_slot,
    clean_slot,
    container_pids,
    names_of,
    nspawn_pids,
)

pytestmark = pytest.mark.timeout(1200)  # the first run builds the host image (apt downloads)
ROOT = Path(__file__).resolve().parents[1]
MANAGED_SERVICES = (
    "postgresql",
    "nginx",
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-node-exporter",
    "prometheus-postgres-exporter",
)


def test_each_host_boots_systemd_with_its_own_identity(onprem_hosts):
    machine_ids = {Path("/etc/machine-id").read_text().strip()}
    for name, host in onprem_hosts.items():
        facts = host.ssh("hostname; cat /etc/machine-id; ps -o comm= -p 1").stdout
        hostname, machine_id, init = facts.split()
        assert (hostname, init) == (name, "systemd")
        state = host.ssh("systemctl is-system-running", check=False).stdout.strip()
        assert state in ("running", "degraded"), host.ssh("systemctl --failed --no-legend", check=False).stdout
        assert machine_id not in machine_ids
        machine_ids.add(machine_id)
        assert host.ssh("ip -4 -o addr show eth0").stdout.split()[3] == f"{host.address}/24"


def test_hosts_start_with_none_of_the_services_the_roles_manage(onprem_hosts):
    for host in onprem_hosts.values():
        states = host.ssh(f"systemctl is-active {' '.join(MANAGED_SERVICES)}", check=False).stdout.split()
        assert states == ["inactive"] * len(MANAGED_SERVICES), host.name
        assert host.ssh("command -v pg_createcluster pgbackrest nginx prometheus").stdout.count("\n") == 4


def test_hosts_reach_each_other_by_name_and_this_machine_reaches_them(onprem_hosts):
    app = onprem_hosts["app"]
    assert app.ssh("timeout 5 bash -c 'echo > /dev/tcp/db/22' && echo open").stdout.strip() == "open"
    assert app.ssh("getent hosts proxy").stdout.split()[0] == onprem_hosts["proxy"].address
    gateway = onprem_hosts["db"].ssh("ip route show default").stdout.split()[2]
    assert gateway == onprem_hosts.gateway


def test_writes_on_a_host_never_reach_this_machine_or_the_other_hosts(onprem_hosts, tmp_path):
    probe = "/etc/eolake-test-hosts-probe"
    onprem_hosts["db"].ssh(f"echo db > {probe}")
    try:
        assert not Path(probe).exists()
        assert onprem_hosts["app"].ssh(f"test -e {probe}", check=False).returncode == 1
    finally:
        onprem_hosts["db"].ssh(f"rm -f {probe}")


def test_a_restart_is_a_new_boot_on_the_same_disk(onprem_hosts):
    proxy = onprem_hosts["proxy"]
    proxy.ssh("echo kept > /var/lib/eolake-restart-probe")
    boot_before = proxy.ssh("cat /proc/sys/kernel/random/boot_id").stdout
    proxy.restart()
    assert proxy.ssh("cat /proc/sys/kernel/random/boot_id").stdout != boot_before
    assert proxy.ssh("cat /var/lib/eolake-restart-probe && rm /var/lib/eolake-restart-probe").stdout == "kept\n"


def test_root_logs_in_with_the_run_key_only(onprem_hosts, tmp_path):
    db = onprem_hosts["db"]
    settings = db.ssh("sshd -T").stdout.splitlines()
    assert "passwordauthentication no" in settings and "permitrootlogin without-password" in settings
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    refused = subprocess.run(
        ["ssh", *onprem_hosts_ssh_options(), "-i", str(other), f"root@{db.address}", "true"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 255 and "Permission denied" in refused.stderr


def onprem_hosts_ssh_options() -> list[str]:
    return [*harness.SSH_OPTIONS, "-o", "IdentitiesOnly=yes"]


def test_ansible_reaches_every_host_through_the_inventory(onprem_hosts, tmp_path):
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(onprem_hosts.inventory({"database": ["db"], "app": ["app"]})))
    result = subprocess.run(
        [str(ROOT / ".venv/bin/ansible"), "-i", str(inventory), "all", "-o", "-m", "ansible.builtin.ping"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(line.split()[0] for line in result.stdout.splitlines() if "SUCCESS" in line) == sorted(onprem_hosts)
    database = subprocess.run(
        [str(ROOT / ".venv/bin/ansible"), "-i", str(inventory), "database", "--list-hosts"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert database.stdout.split()[-1] == "db"


def test_an_inventory_group_of_unknown_hosts_is_refused(onprem_hosts):
    with pytest.raises(KeyError, match="nope"):
        onprem_hosts.inventory({"app": ["app", "nope"]})


def test_a_run_that_died_is_cleaned_before_its_slot_is_reused(onprem_hosts):
    """A run killed outright (no finally, no atexit) leaves a booted host; the next claim removes all of it."""
    script = (
        "import sys, time; sys.path.insert(0, 'tests'); from onprem_hosts import test_hosts\n"
        "with test_hosts(['solo']) as hosts:\n"
        "    print(hosts['solo'].machine, flush=True); time.sleep(600)\n"
    )
    victim = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    machine = victim.stdout.readline().strip()
    slot = int(machine.removeprefix("eo").split("-")[0])
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    run_dir = STATE / f"run-{slot}"
    assert nspawn_pids(run_dir) and container_pids(slot) and machine in netns_names()

    claimed = claim_slot()  # slots in use by live runs are skipped; the dead one is cleaned and taken
    try:
        assert claimed == slot
        assert not nspawn_pids(run_dir) and not container_pids(slot) and machine not in netns_names()
        assert not [line for line in Path("/proc/self/mounts").read_text().splitlines() if str(run_dir) in line]
        assert names_of(slot)[1] not in links()
        assert sorted(p.name for p in run_dir.iterdir()) == ["pid"]
    finally:
        clean_slot(claimed)
    assert not run_dir.exists()


def netns_names() -> list[str]:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()


def links() -> list[str]:
    return [
        link["ifname"]
        for link in json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout)
    ]


def test_a_machine_that_cannot_boot_hosts_says_why(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(harness.shutil, "which", lambda tool: None if tool == "systemd-nspawn" else "/bin/x")
    with pytest.raises(HostsUnavailable, match="must run as root.*systemd-nspawn not found"):
        check_machine()
