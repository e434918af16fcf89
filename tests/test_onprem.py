"""The platform installed by Ansible on real systemd hosts (tests/onprem_hosts.py): a database host, two app hosts
sharing the storage directory (as an NFS mount would), and a proxy that is also the monitoring host, from an
inventory `eolake render` writes from a stack. playbooks/site.yml runs once for the module; then the acceptance suite
passes against the proxy over HTTPS, a second run changes nothing, the monitoring scrapes every target under the
embedded target's names, the units are hardened, a rolling upgrade under a steady read load fails no request, and
rebooted hosts bring every service back with the data.

Cost: four hosts boot in seconds; the first site.yml run dominates (the controller builds the wheelhouse once per
release, ~2 min, cached in ~/.cache/eolake/wheelhouse; the hosts install it). Measured on 2 shared cores at a load
of 10-17: site.yml 800-950 s, second run 250 s, rolling upgrade 600 s, the module 32 min."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from onprem_hosts import Hosts, test_hosts

from eolake.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOKS = ROOT / "playbooks"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
HOSTS = ("db", "app1", "app2", "proxy")
STORAGE = "/srv/eolake/data"
# The demo data (loaded once by the first run) is what the acceptance suite and the order test read.
EXTRA_VARS = ("-e", "eolake_services_demo_data=true")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
READ_LOAD = (
    "/stac/collections/naip",
    "/stac/search?collections=garonne-wse&limit=5",
    "/timeseries/collections/stations/items",
    "/thesaurus/rest/v1/vocabularies",
    "/search/collections",
    "/",
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


@dataclass
class Run:
    result: subprocess.CompletedProcess
    seconds: float

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        return {
            host: {"ok": int(ok), "changed": int(changed), "unreachable": int(unreachable), "failed": int(failed)}
            for host, ok, changed, unreachable, failed in RECAP.findall(self.result.stdout)
        }

    def changed_tasks(self) -> list[str]:
        task, found = "", []
        for line in self.result.stdout.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                task = line.rstrip("* ")
            elif line.startswith("changed:"):
                found.append(f"{task}: {line}")
        return found

    def describe(self) -> str:
        return f"exit {self.result.returncode}\n{self.result.stdout[-6000:]}\n{self.result.stderr[-3000:]}"


@dataclass
class Installed:
    hosts: Hosts
    root: Path
    first_run: Run | None = None
    ca_file: Path = field(init=False)

    @property
    def inventory(self) -> Path:
        return self.root / "inventory"

    @property
    def base_url(self) -> str:
        return f"https://{self.hosts['proxy'].address}"

    def key(self, role: str) -> str:
        return (self.inventory / "credentials" / f"api-key-{role}").read_text().strip()

    def playbook(self, name: str, *extra: str) -> Run:
        command = [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            str(self.inventory / "inventory.yml"),
            "-i",
            str(self.root / "connection.yml"),
            str(PLAYBOOKS / name),
            *EXTRA_VARS,
            *extra,
        ]
        env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "False"}
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=2400)
        return Run(result, time.monotonic() - started)

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, verify=ssl.create_default_context(cafile=str(self.ca_file)), timeout=30, **kwargs
        )


def stack(hosts: Hosts) -> dict:
    address = {name: hosts[name].address for name in HOSTS}
    return {
        "config": {
            "eolake:platform": {
                "name": "onprem-test",
                "base_url": f"https://{address['proxy']}",
                "services": {
                    name: {} for name in ("catalog", "tiles", "timeseries", "thesaurus", "search", "downloads", "web")
                },
                "database": {"embedded": False, "max_connections": 100},
                "storage": {"kind": "local", "path": STORAGE},
                # The local stack's second provider: the acceptance suite's federation checks expect it with the
                # demo data.
                "providers": [
                    {
                        "name": "hydrology",
                        "kind": "stac",
                        "url": "/stac",
                        "enabled": True,
                        "free_text": "filter",
                        "collections": ["garonne-wse", "garonne-virtual-stations"],
                        "timeout_seconds": 5,
                    }
                ],
                "onprem": {
                    "database": {"name": "db", "address": address["db"]},
                    "app": [{"name": n, "address": address[n]} for n in ("app1", "app2")],
                    "proxy": {"name": "proxy", "address": address["proxy"]},
                    "monitoring": {"name": "proxy", "address": address["proxy"]},
                    "shared_storage": True,
                },
            }
        }
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("onprem")
    shared = root / "storage"
    shared.mkdir()
    binds = {name: [f"{shared}:{STORAGE}"] for name in ("app1", "app2")}
    with test_hosts(HOSTS, binds=binds) as hosts:
        platform = Installed(hosts, root)
        (root / "Pulumi.onprem-test.yaml").write_text(yaml.safe_dump(stack(hosts)))
        assert cli(["render", "--stack", str(root / "Pulumi.onprem-test.yaml"), "--out", str(platform.inventory)]) == 0
        (root / "connection.yml").write_text(yaml.safe_dump(hosts.inventory()))
        platform.first_run = platform.playbook("site.yml")
        assert platform.first_run.result.returncode == 0, platform.first_run.describe()
        print(f"\nsite.yml, first run: {platform.first_run.seconds:.0f} s")
        platform.ca_file = root / "proxy-ca.crt"
        platform.ca_file.write_text(hosts["proxy"].ssh("cat /etc/nginx/eolake-tls/eolake.crt").stdout)
        yield platform


def test_acceptance_suite_passes_against_the_proxy(installed: Installed):
    output = installed.root / "acceptance"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "acceptance" / "run.py"),
            "--base-url",
            installed.base_url,
            "--demo-data",
            "--ca-file",
            str(installed.ca_file),
            "--outputdir",
            str(output),
            "--admin-key-file",
            str(installed.inventory / "credentials" / "api-key-admin"),
            "--user-key-file",
            str(installed.inventory / "credentials" / "api-key-user"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    failed = [line for line in result.stdout.splitlines() if line.rstrip().endswith("| FAIL |")]
    assert result.returncode == 0, (
        "\n".join(failed) + f"\n{result.stdout[-3000:]}\n{result.stderr[-1000:]}" + hosts_saw(installed)
    )
    totals = re.findall(r"^(\d+) tests?, (\d+) passed, (\d+) failed(?:, (\d+) skipped)?$", result.stdout, re.M)[-1]
    assert int(totals[0]) >= 40 and totals[0] == totals[1], result.stdout[-3000:]
    print(f"\nacceptance against {installed.base_url}: {totals[1]} of {totals[0]} passed")


def hosts_saw(installed: Installed) -> str:
    """What the hosts logged lately: the services' warnings and restarts, the proxy's upstream errors."""
    said = []
    for name in ("app1", "app2"):
        said.append(
            f"--- {name}: "
            + installed.hosts[name]
            .ssh(
                "journalctl --no-pager -q --since=-15min -p warning -u 'eolake-*' | tail -n 30; "
                "systemctl show -p NRestarts -p Result eolake-web eolake-catalog",
                check=False,
            )
            .stdout
        )
    said.append("--- proxy: " + installed.hosts["proxy"].ssh("tail -n 15 /var/log/nginx/error.log", check=False).stdout)
    return "\n".join(said)


def test_second_run_changes_nothing(installed: Installed):
    second = installed.playbook("site.yml")
    assert second.result.returncode == 0, second.describe()
    recap = second.recap
    assert set(recap) == set(HOSTS), second.describe()
    changed = {host: counts["changed"] for host, counts in recap.items() if counts["changed"] or counts["failed"]}
    assert not changed, f"a second run changed {changed}:\n" + "\n".join(second.changed_tasks())
    print(
        f"\nsite.yml, second run: {second.seconds:.0f} s, "
        + ", ".join(f"{h} changed={c['changed']}" for h, c in sorted(recap.items()))
    )


def test_monitoring_scrapes_every_target_under_the_embedded_names(installed: Installed):
    prometheus = f"http://{installed.hosts['proxy'].address}:9090"
    expected = {
        t["job"]
        for t in yaml.safe_load((installed.inventory / "group_vars" / "monitoring.yml").read_text())[
            "eolake_monitoring_targets"
        ]
    } | {"prometheus", "alertmanager"}
    deadline = time.monotonic() + 120
    while True:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        down = [(t["labels"]["job"], t["scrapeUrl"], t["lastError"]) for t in targets if t["health"] != "up"]
        if not down or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not down, down
    assert {t["labels"]["job"] for t in targets} == expected
    catalog = [t for t in targets if t["labels"]["job"] == "eolake-catalog"]
    assert len(catalog) == 2 and all(t["labels"]["service"] == "catalog" for t in catalog)
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    names = {r["name"] for g in rules for r in g["rules"]}
    assert {"Watchdog", "EolakeServiceDown"} <= names
    assert not any("Kube" in n for n in names), "the Kubernetes-only alerts are not installed"
    # No HTTP caller may stop or reload Prometheus, nor use its admin API.
    assert httpx.post(f"{prometheus}/-/reload", timeout=10).status_code == 403
    assert httpx.post(f"{prometheus}/api/v1/admin/tsdb/snapshot", timeout=10).status_code >= 400


def test_units_are_hardened_and_secrets_stay_in_the_env_files(installed: Installed):
    app = installed.hosts["app1"]
    shown = app.ssh(
        "systemctl show eolake-catalog.service eolake-downloads-worker.service -p User "
        "-p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp -p CapabilityBoundingSet "
        "-p Restart -p MemoryMax -p ActiveState"
    ).stdout
    for unit in shown.strip().split("\n\n"):
        values = dict(line.split("=", 1) for line in unit.splitlines())
        assert values["User"] == "eolake" and values["NoNewPrivileges"] == "yes", values
        assert values["ProtectSystem"] == "strict" and values["ProtectHome"] == "yes", values
        assert values["PrivateTmp"] == "yes" and values["CapabilityBoundingSet"] == "", values
        assert values["Restart"] == "on-failure" and values["MemoryMax"] != "infinity", values
        assert values["ActiveState"] == "active", values
    modes = app.ssh("stat -c '%a %U %G %n' /etc/eolake/*.env /etc/eolake/api-keys.json").stdout.splitlines()
    assert modes and all(line.startswith("640 root eolake ") for line in modes), modes
    password = (installed.inventory / "credentials" / "database-eolake_app").read_text().strip()
    assert password in app.ssh("cat /etc/eolake/catalog.env").stdout
    assert installed.key("admin") not in app.ssh("cat /etc/eolake/api-keys.json").stdout
    rendered = [p for p in installed.inventory.rglob("*.yml")]
    assert rendered and not any(password in p.read_text() for p in rendered)


def test_proxy_pins_forwarded_headers_and_limits(installed: Installed):
    with installed.client() as client:
        landing = client.get(
            "/stac/",
            headers={
                "X-Forwarded-Host": "evil.example",
                "X-Forwarded-Proto": "http",
                "Forwarded": "host=evil.example;proto=http",
            },
        )
        assert landing.status_code == 200
        hrefs = [link["href"] for link in landing.json()["links"]]
        assert hrefs and all(h.startswith(installed.base_url + "/") for h in hrefs), hrefs
    # Refused from the announced length, before any of the body is read (the stack's limit is 10m).
    too_big = (
        b"POST /stac/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 11534336\r\n\r\n"
    )
    assert first_status(installed, too_big) == 413
    plain = httpx.get(f"http://{installed.hosts['proxy'].address}/stac/", timeout=10)
    assert plain.status_code == 308 and plain.headers["location"] == f"{installed.base_url}/stac/"


def test_a_service_answering_503_stays_in_the_proxy(installed: Installed):
    """A 503 is the service's answer (here: no trace store on this target), not a sign the host is gone."""
    admin = {"X-API-Key": installed.key("admin")}
    with installed.client() as client:
        assert [client.get("/console/api/traces", headers=admin).status_code for _ in range(3)] == [503] * 3
        assert client.get("/").status_code == 200
        assert client.get("/stac/").status_code == 200


def first_status(installed: Installed, request: bytes) -> int:
    """Send raw bytes over TLS to the proxy; the status code of the answer."""
    address = installed.hosts["proxy"].address
    context = ssl.create_default_context(cafile=str(installed.ca_file))
    with (
        socket.create_connection((address, 443), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=address) as tls,
    ):
        tls.sendall(request)
        return int(tls.recv(256).split()[1])


class ReadLoad:
    """GETs through the proxy at a steady rate from a few threads, below every service's per-client rate limit;
    every answer that is not a 2xx counts as a failure.

    A request on a kept-alive connection that the proxy closed at that very moment (a reload ends its old workers'
    idle connections) gets no answer at all; like browsers (RFC 9112 §9.3.1), the load sends such an idempotent
    request once more on a new connection, and counts it under "retried"."""

    def __init__(self, installed: Installed, threads: int = 3, rate: float = 12.0):
        self.installed, self.stop = installed, threading.Event()
        self.interval = threads / rate  # each thread's pace
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _get(self, client: httpx.Client, path: str) -> str:
        try:
            return str(client.get(path).status_code)
        except httpx.RemoteProtocolError:
            self.outcomes["retried"] += 1
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        try:
            return str(client.get(path).status_code)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"

    def _run(self, index: int) -> None:
        with self.installed.client() as client:
            i, due = index, time.monotonic()
            while not self.stop.wait(max(0.0, due - time.monotonic())):
                due, path, i = due + self.interval, READ_LOAD[i % len(READ_LOAD)], i + 1
                outcome = self._get(client, path)
                self.outcomes[outcome.partition(":")[0]] += 1
                if not outcome.startswith("2"):
                    self.failures.append(f"{path}: {outcome}")

    def __enter__(self) -> ReadLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def main_pids(installed: Installed, unit: str) -> dict[str, str]:
    return {
        name: installed.hosts[name].ssh(f"systemctl show -p MainPID --value {unit}").stdout.strip()
        for name in ("app1", "app2")
    }


def test_rolling_upgrade_under_a_steady_read_load_fails_no_request(installed: Installed):
    before = main_pids(installed, "eolake-catalog.service")
    with ReadLoad(installed) as load:
        upgrade = installed.playbook("upgrade.yml", "-e", "eolake_services_force_restart=true")
    assert upgrade.result.returncode == 0, upgrade.describe()
    after = main_pids(installed, "eolake-catalog.service")
    assert all(after[h] != before[h] for h in before), f"every app host restarts: {before} → {after}"
    requests = sum(n for outcome, n in load.outcomes.items() if outcome != "retried")
    print(
        f"\nrolling upgrade: {upgrade.seconds:.0f} s, {requests} requests during it, "
        f"{len(load.failures)} failed ({dict(load.outcomes)})"
    )
    assert requests >= 100, "the load was not steady enough to prove anything"
    assert load.failures == []
    reloads = 2 * len(before)  # the proxy drains and restores each app host
    assert load.outcomes["retried"] <= reloads * len(load.threads), "connections dropped beyond the proxy's reloads"


def order_demo_file(client: httpx.Client, key: str) -> dict:
    body = {"items": [{"collection": "garonne-wse", "id": "garonne-wse-2023-01-01", "assets": ["wse"]}]}
    created = client.post("/downloads/orders", json=body, headers={"X-API-Key": key})
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + 120
    while True:
        order = client.get(f"/downloads/orders/{created.json()['id']}", headers={"X-API-Key": key}).json()
        if order["status"] in ("succeeded", "failed", "canceled") or time.monotonic() > deadline:
            return order
        time.sleep(1)


def download_sha256(client: httpx.Client, key: str, order: dict) -> str:
    answer = client.get(f"/downloads/orders/{order['id']}/files/{order['files'][0]['id']}", headers={"X-API-Key": key})
    assert answer.status_code == 200, answer.text
    return hashlib.sha256(answer.content).hexdigest()


def wait_until_every_service_is_ready(installed: Installed, timeout: float = 300) -> None:
    prefixes = [
        r["path"].rstrip("/")
        for r in yaml.safe_load((installed.inventory / "group_vars" / "all.yml").read_text())["eolake_proxy_routes"]
    ]
    deadline = time.monotonic() + timeout
    with installed.client() as client:
        for prefix in prefixes:
            while True:
                try:
                    if client.get(f"{prefix}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{prefix} not ready {timeout:.0f} s after the reboot"
                time.sleep(1)


def test_rebooted_hosts_bring_every_service_back_with_the_data(installed: Installed):
    key = installed.key("user")
    with installed.client() as client:
        order = order_demo_file(client, key)
        assert order["status"] == "succeeded", order
        checksum = download_sha256(client, key, order)
    started = time.monotonic()
    for name in ("db", "app1", "app2"):  # nothing but the hosts' own systemd brings the platform back
        installed.hosts[name].restart()
    wait_until_every_service_is_ready(installed)
    print(f"\nreboot of db, app1, app2: every service ready through the proxy after {time.monotonic() - started:.0f} s")
    for name in ("app1", "app2"):
        failed = installed.hosts[name].ssh("systemctl list-units 'eolake-*' --state=failed --no-legend").stdout
        active = installed.hosts[name].ssh("systemctl list-units 'eolake-*' --state=active --no-legend").stdout
        assert not failed.strip() and len(active.strip().splitlines()) == 8, active + failed
    with installed.client() as client:
        again = client.get(f"/downloads/orders/{order['id']}", headers={"X-API-Key": key})
        assert again.status_code == 200 and again.json()["status"] == "succeeded"
        assert download_sha256(client, key, order) == checksum
