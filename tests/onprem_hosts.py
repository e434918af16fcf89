"""Real systemd hosts for the on-premise tests: systemd-nspawn containers booted on overlays of this machine's root.

    with test_hosts(["db", "app", "proxy"]) as hosts:
        hosts["db"].address             # 10.213.<slot>.<n> on a private bridge, reachable from this machine
        hosts["db"].ssh("systemctl is-active postgresql")   # CompletedProcess (text); check=True raises
        hosts["db"].restart()           # power off, boot again on the same disk (upper layer)
        hosts.inventory({"database": ["db"]})               # an Ansible YAML inventory (dict)

How: one host IMAGE is built once and cached (/var/tmp/eolake-test-hosts/image-<hash>.ext4): an ext4 file system
image holding an overlay upper layer over `/` into which the packages the on-premise roles need are installed by
apt-get run inside `systemd-nspawn` (never into this machine's root). The image sits on its own file system because
overlayfs refuses two lower layers of which one lies inside the other. Each host is overlay(lower: image, `/`;
upper: its own directory), booted with `systemd-nspawn -b` in its own network namespace, wired by a veth pair to a
bridge this module creates (host side address .1), with its own machine id, hostname, static address and an sshd
that admits root with the run's key pair only. Hosts boot in parallel; a host is ready when sshd answers and
`systemctl is-system-running --wait` says running or degraded.

Runs take a slot (0-15: its own subnet, bridge and names), so concurrent runs don't meet; everything a run creates
(processes, mounts, network namespaces, bridge, directories) is removed at the end, on failure, on Ctrl-C and at
exit, and a slot left behind by a run that died is cleaned before it is reused. Needs root, overlayfs, loop devices
and systemd-nspawn (Debian's systemd-container, installed by ./eolake).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

STATE = Path("/var/tmp/eolake-test-hosts")
SLOTS = 16
SUBNET = "10.213.{slot}.0/24"
FIRST_HOST = 10  # host n gets .10+n; .1 is this machine on the bridge
IMAGE_UNUSED_DAYS = 7
IMAGE_SIZE = "16G"  # sparse: only what is written takes space
PACKAGES = (
    "openssh-server",
    "sudo",
    "acl",
    "dbus",
    "iproute2",
    "ca-certificates",
    "python3-venv",
    "postgresql",
    "postgresql-15-postgis-3",
    "pgbackrest",
    "nginx",
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-node-exporter",
    "prometheus-postgres-exporter",
)
# Installed packages would start their services at boot (this machine's root has several enabled): hosts start
# with none of them, the roles enable what they manage. Timers that reach the network or hold the apt lock go too.
DISABLED_UNITS = (
    "postgresql",
    "nginx",
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-node-exporter",
    "prometheus-postgres-exporter",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "e2scrub_all.timer",
    "e2scrub_reap",
    "fstrim.timer",
    "dpkg-db-backup.timer",
    "systemd-timesyncd",
    "rabbitmq-server",
    "epmd.socket",
    "epmd.service",  # the machine's broker (the local platform's events need it)
)
SSHD_CONFIG = (
    "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n"
)
SSH_OPTIONS = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "BatchMode=yes",
    "-o",
    "ConnectTimeout=5",
)
BOOT_TIMEOUT = 180
POWEROFF_TIMEOUT = 45


class HostsUnavailable(RuntimeError):
    """This machine cannot boot test hosts (not root, no overlayfs, no systemd-nspawn, ...)."""


def run(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {(result.stderr or result.stdout)[-2000:]}")
    return result


def check_machine() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (mounts, network namespaces, systemd-nspawn)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        problems.append("the kernel has no overlayfs")
    if not Path("/dev/loop-control").exists():
        problems.append("no loop devices (/dev/loop-control)")
    for tool in ("systemd-nspawn", "ip", "ssh", "ssh-keygen", "mkfs.ext4"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} not found (./eolake installs systemd-container, openssh-client, iproute2)")
    if problems:
        raise HostsUnavailable("cannot boot test hosts: " + "; ".join(problems))


# --- the image -------------------------------------------------------------------------------------------------


def image_file() -> Path:
    return STATE / f"image-{hashlib.sha256(image_script().encode()).hexdigest()[:12]}.ext4"


def ensure_image() -> Path:
    """The cached image file, built first if missing (one builder at a time; a half-built image is never kept)."""
    STATE.mkdir(parents=True, exist_ok=True)
    image = image_file()
    with open(STATE / "image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not image.exists():
            partial = image.with_suffix(".building")
            try:
                build_image(partial)
                partial.rename(image)
            finally:
                partial.unlink(missing_ok=True)
        image.touch()
        for other in STATE.glob("image-*.ext4"):  # other recipes (other checkouts) unused for a week go
            if other != image and time.time() - other.stat().st_mtime > IMAGE_UNUSED_DAYS * 86400:
                other.unlink()
    return image


def build_image(file: Path) -> None:
    file.unlink(missing_ok=True)
    run("truncate", "-s", IMAGE_SIZE, str(file))
    run("mkfs.ext4", "-q", "-F", "-L", "eolake-image", str(file))
    mnt = file.with_suffix(".mnt")
    for mount in sorted(mounts_under(mnt), key=len, reverse=True) + ([str(mnt)] if os.path.ismount(mnt) else []):
        run("umount", "-l", mount)  # a build that was killed
    shutil.rmtree(mnt, ignore_errors=True)
    mnt.mkdir()
    run("mount", "-o", "loop", str(file), str(mnt))
    try:
        (mnt / "upper").mkdir()
        (mnt / "work").mkdir()
        merged = mnt / "merged"
        merged.mkdir()
        run(
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir=/,upperdir={mnt}/upper,workdir={mnt}/work",
            str(merged),
        )
        try:
            install_packages(merged)
        finally:
            run("umount", str(merged))
        shutil.rmtree(mnt / "work")
        merged.rmdir()
    finally:
        run("umount", str(mnt))
        mnt.rmdir()


def in_image(merged: Path, script: str, timeout: float = 1800) -> None:
    """Run a shell script inside the image (not booted, this machine's network)."""
    run(
        "systemd-nspawn",
        "-q",
        "-D",
        str(merged),
        "--register=no",
        "--keep-unit",
        "--pipe",
        "-E",
        "DEBIAN_FRONTEND=noninteractive",
        "/bin/sh",
        "-euc",
        script,
        timeout=timeout,
    )


def install_packages(merged: Path) -> None:
    in_image(merged, image_script())


def image_script() -> str:
    """What makes the image; its text names the image file, so a change builds a new one."""
    # The root's own PostgreSQL cluster (this machine's data) must not be the hosts' disk: the database role
    # creates its cluster, as it would on a host where the distribution's cluster was removed.
    # root's user manager lingers: no per-login setup and teardown of /run/user/0, which races when Ansible opens
    # and closes SSH sessions quickly (user-runtime-dir@0 fails and the host turns "degraded").
    return f"""
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends {" ".join(PACKAGES)} >/dev/null
        rm -rf /etc/postgresql/*/main /var/lib/postgresql/*/main /var/log/postgresql/*
        systemctl disable {" ".join(DISABLED_UNITS)} 2>/dev/null || true
        systemctl enable ssh
        mkdir -p /var/lib/systemd/linger && touch /var/lib/systemd/linger/root
        rm -f /etc/ssh/ssh_host_*_key* && ssh-keygen -A -q
        printf '%s' '{SSHD_CONFIG}' > /etc/ssh/sshd_config.d/eolake-test.conf
        apt-get clean
    """


# --- slots: one per run ----------------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def subnet_in_use(subnet: ipaddress.IPv4Network) -> bool:
    routes = json.loads(run("ip", "-j", "route", "show", "table", "all").stdout or "[]")
    for route in routes:
        with contextlib.suppress(ValueError):
            if route.get("dst") not in (None, "default") and ipaddress.ip_network(route["dst"], strict=False).overlaps(
                subnet
            ):
                return True
    return False


def claim_slot() -> int:
    """A free slot (its directory created, this process's pid inside); a slot whose run died is cleaned first."""
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "slots.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for slot in range(SLOTS):
            owner = STATE / f"run-{slot}" / "pid"
            if owner.exists():
                if process_alive(int(owner.read_text() or 0)):
                    continue
                clean_slot(slot)
            elif (STATE / f"run-{slot}").exists():
                clean_slot(slot)
            if subnet_in_use(ipaddress.ip_network(SUBNET.format(slot=slot))):
                continue
            (STATE / f"run-{slot}").mkdir()
            owner.write_text(str(os.getpid()))
            return slot
    raise HostsUnavailable(f"no free slot among {SLOTS} (runs alive, or their subnets routed elsewhere)")


def names_of(slot: int) -> tuple[str, str]:
    """Prefix of this slot's machines and network namespaces, and its bridge."""
    return f"eo{slot}-", f"eo{slot}br"


def clean_slot(slot: int) -> None:
    """Remove whatever a run in `slot` left: its nspawn processes, mounts, network namespaces, veths, bridge, dirs."""
    root = STATE / f"run-{slot}"
    prefix, bridge = names_of(slot)
    for pid in nspawn_pids(root) + container_pids(slot):  # killing a host's init ends all its processes
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not nspawn_pids(root) and not container_pids(slot), 30, "the run's processes to exit")
    for mount in sorted(mounts_under(root), key=len, reverse=True):
        run("umount", "-l", mount, check=False)
    for netns in run("ip", "netns", "list", check=False).stdout.split():
        if netns.startswith(prefix):
            run("ip", "netns", "delete", netns, check=False)
    for link in json.loads(run("ip", "-j", "link", "show", check=False).stdout or "[]"):
        if link["ifname"] == bridge or link["ifname"].startswith(f"eo{slot}v"):
            run("ip", "link", "delete", link["ifname"], check=False)
    shutil.rmtree(root, ignore_errors=True)


def nspawn_pids(root: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if argv and argv[0].endswith(b"systemd-nspawn") and any(str(root).encode() in a for a in argv):
                    pids.append(int(proc.name))
    return pids


def container_pids(slot: int) -> list[int]:
    """Processes inside the slot's hosts (found by network namespace: they outlive a killed systemd-nspawn)."""
    prefix, _ = names_of(slot)
    pids = []
    for netns in run("ip", "netns", "list", check=False).stdout.split():
        if netns.startswith(prefix):
            pids += [int(p) for p in run("ip", "netns", "pids", netns, check=False).stdout.split()]
    return pids


def mounts_under(root: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].encode().decode("unicode_escape")
        if target.startswith(f"{root}/"):
            found.append(target)
    return found


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return result


# --- hosts -----------------------------------------------------------------------------------------------------


@dataclass
class Host:
    """One booted host; `ssh` and `restart` are what tests use."""

    name: str
    address: str
    machine: str
    directory: Path
    image: Path
    key: Path
    log: Path
    process: subprocess.Popen | None = field(default=None, repr=False)
    boot_seconds: float = 0.0  # from boot() to ready, for the last boot
    boot_started: float = field(default=0.0, repr=False)
    binds: tuple[str, ...] = ()  # systemd-nspawn --bind=SOURCE:TARGET, e.g. a directory several hosts share

    @property
    def merged(self) -> Path:
        return self.directory / "merged"

    def ssh(
        self, command: str, check: bool = True, timeout: float = 300, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """Run `command` on the host as root over SSH."""
        result = subprocess.run(
            ["ssh", *SSH_OPTIONS, "-i", str(self.key), f"root@{self.address}", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{self.name}: `{command}` failed ({result.returncode}):\n{result.stdout[-2000:]}"
                f"\n{result.stderr[-2000:]}"
            )
        return result

    def restart(self) -> None:
        """Power off (an orderly shutdown) and boot again on the same upper layer: the same disk."""
        self.poweroff()
        self.boot()
        self.wait_ready()

    def boot(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "systemd-nspawn",
                    "-q",
                    "-D",
                    str(self.merged),
                    f"--machine={self.machine}",
                    f"--hostname={self.name}",
                    "-b",
                    "--register=no",
                    "--link-journal=no",
                    "--keep-unit",
                    "--console=pipe",
                    f"--network-namespace-path=/run/netns/{self.machine}",
                    *(f"--bind={b}" for b in self.binds),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # Ctrl-C reaches the tests, which then power hosts off in order
        self.boot_started = time.monotonic()

    def wait_ready(self) -> None:
        def sshd_answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name}: systemd-nspawn exited ({self.process.returncode}):\n"
                    f"{self.log.read_text(errors='replace')[-3000:]}"
                )
            with socket.socket() as s:
                s.settimeout(1)
                return s.connect_ex((self.address, 22)) == 0

        wait_for(sshd_answers, BOOT_TIMEOUT, f"sshd on {self.name}")
        state = self.ssh("systemctl is-system-running --wait", check=False, timeout=BOOT_TIMEOUT).stdout.strip()
        if state not in ("running", "degraded"):
            failed = self.ssh("systemctl --failed --no-legend", check=False).stdout
            raise RuntimeError(f"{self.name}: system state {state!r}; failed units:\n{failed}")
        self.boot_seconds = time.monotonic() - self.boot_started

    def poweroff(self) -> None:
        """SIGTERM makes systemd-nspawn ask the host's systemd for an orderly shutdown; a second one terminates the
        container at once (all its processes: its PID namespace ends), SIGKILL if even that hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(POWEROFF_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            tail = self.log.read_text(errors="replace")[-1500:]
            print(
                f"{self.name}: no orderly shutdown within {POWEROFF_TIMEOUT} s, terminating it:\n{tail}",
                file=sys.stderr,
            )
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Hosts(Mapping[str, Host]):
    """The booted hosts by name, the bridge address of this machine, and an Ansible inventory."""

    def __init__(self, hosts: dict[str, Host], gateway: str, key: Path):
        self._hosts = hosts
        self.gateway = gateway  # this machine's address on the hosts' network
        self.key = key

    def __getitem__(self, name: str) -> Host:
        return self._hosts[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._hosts)

    def __len__(self) -> int:
        return len(self._hosts)

    def inventory(self, groups: Mapping[str, list[str]] | None = None) -> dict:
        """An Ansible inventory (YAML/JSON structure): every host with its connection, plus `groups` of them."""
        common_args = " ".join(SSH_OPTIONS)
        hosts = {
            name: {
                "ansible_host": host.address,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.key),
                "ansible_ssh_common_args": common_args,
                "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_pipelining": True,
            }
            for name, host in self._hosts.items()
        }
        unknown = sorted({n for members in (groups or {}).values() for n in members} - set(hosts))
        if unknown:
            raise KeyError(f"inventory groups name unknown hosts: {', '.join(unknown)}")
        children = {group: {"hosts": {name: {} for name in members}} for group, members in (groups or {}).items()}
        return {"all": {"hosts": hosts, "children": children}}


@contextlib.contextmanager
def test_hosts(
    names: list[str] | tuple[str, ...] = ("db", "app", "proxy"), binds: Mapping[str, list[str]] | None = None
) -> Iterator[Hosts]:
    """Boot `names` as hosts (in parallel) and yield them; everything is removed afterwards, whatever happens.
    `binds`: per host name, directories of this machine mounted into it (SOURCE:TARGET), e.g. one shared storage."""
    check_machine()
    if len(set(names)) != len(names) or not all(n.isidentifier() and n.islower() for n in names):
        raise ValueError(f"host names must be distinct lowercase identifiers: {names}")
    image = ensure_image()
    slot = claim_slot()
    cleanup = CleanupOnce(slot)
    atexit.register(cleanup)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, raise_interrupt) if in_main_thread else None
    hosts: Hosts | None = None
    try:
        hosts = create_hosts(slot, list(names), image, binds or {})
        with ThreadPoolExecutor(len(hosts)) as pool:
            for host in hosts.values():
                host.boot()
            list(pool.map(Host.wait_ready, hosts.values()))
        yield hosts
    finally:
        try:
            if hosts is not None:
                with ThreadPoolExecutor(len(hosts)) as pool:
                    list(pool.map(Host.poweroff, hosts.values()))
        finally:
            cleanup()
            atexit.unregister(cleanup)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


test_hosts.__test__ = False  # a context manager, not a test, when a test module imports it


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


class CleanupOnce:
    def __init__(self, slot: int):
        self.slot = slot
        self.done = False

    def __call__(self) -> None:
        if not self.done:
            self.done = True
            clean_slot(self.slot)


def create_hosts(slot: int, names: list[str], image: Path, binds: Mapping[str, list[str]]) -> Hosts:
    root = STATE / f"run-{slot}"
    prefix, bridge = names_of(slot)
    network = ipaddress.ip_network(SUBNET.format(slot=slot))
    gateway = str(network[1])
    key = root / "id_ed25519"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"eolake-test-hosts-{slot}", "-f", str(key))
    image_mount = root / "image"
    image_mount.mkdir()
    run("mount", "-o", "loop,ro", str(image), str(image_mount))
    run("ip", "link", "add", bridge, "type", "bridge")
    run("ip", "addr", "add", f"{gateway}/{network.prefixlen}", "dev", bridge)
    run("ip", "link", "set", bridge, "up")
    addresses = {name: str(network[FIRST_HOST + i]) for i, name in enumerate(names)}
    hosts = {}
    for i, name in enumerate(names):
        host = Host(
            name=name,
            address=addresses[name],
            machine=prefix + name,
            directory=root / name,
            image=image_mount / "upper",
            key=key,
            log=root / f"{name}.log",
            binds=tuple(binds.get(name, ())),
        )
        prepare_disk(host, addresses, key.with_suffix(".pub").read_text())
        wire(host, f"eo{slot}v{i}", bridge, gateway, network.prefixlen)
        hosts[name] = host
    return Hosts(hosts, gateway, key)


def prepare_disk(host: Host, addresses: dict[str, str], public_key: str) -> None:
    """The host's own upper layer: machine id, hostname, hosts file, root's authorized key; then the overlay."""
    upper, work = host.directory / "upper", host.directory / "work"
    for d in (upper / "etc", upper / "root" / ".ssh", work, host.merged):
        d.mkdir(parents=True)
    (upper / "root" / ".ssh").chmod(0o700)
    (upper / "etc" / "machine-id").write_text(secrets.token_hex(16) + "\n")
    (upper / "etc" / "hostname").write_text(host.name + "\n")
    (upper / "etc" / "hosts").write_text(
        "127.0.0.1 localhost\n::1 localhost\n" + "".join(f"{a} {n}\n" for n, a in addresses.items())
    )
    keys = upper / "root" / ".ssh" / "authorized_keys"
    keys.write_text(public_key)
    keys.chmod(0o600)
    run(
        "mount",
        "-t",
        "overlay",
        "overlay",
        "-o",
        f"lowerdir={host.image}:/,upperdir={upper},workdir={work}",
        str(host.merged),
    )


def wire(host: Host, veth: str, bridge: str, gateway: str, prefixlen: int) -> None:
    """The host's network namespace with `eth0` (static address, default route to this machine) on the bridge."""
    netns = host.machine
    run("ip", "netns", "add", netns)
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    run("ip", "link", "set", veth, "master", bridge, "up")
    run("ip", "-n", netns, "link", "set", "lo", "up")
    run("ip", "-n", netns, "addr", "add", f"{host.address}/{prefixlen}", "dev", "eth0")
    run("ip", "-n", netns, "link", "set", "eth0", "up")
    run("ip", "-n", netns, "route", "add", "default", "via", gateway)
