"""The on-premise inventory rendered from a stack: every service with its settings, peers at host:port on the same
app host, the proxy's routes and the scrape targets follow the stack, no secret in any file, bad stacks refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eolake.cli import main as cli
from eolake_kit.ratelimit import TrustedProxies
from eolake_spec import load_stack, manifests

STACK = Path(__file__).resolve().parents[1] / "stacks" / "Pulumi.onprem.yaml"


def render(tmp_path: Path, stack: Path = STACK) -> Path:
    out = tmp_path / "inventory"
    assert cli(["render", "--stack", str(stack), "--out", str(out)]) == 0
    return out


def read(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def moved_stack(tmp_path: Path, service: str, path: str) -> Path:
    document = yaml.safe_load(STACK.read_text())
    document["config"]["eolake:platform"]["services"][service]["path"] = path
    moved = tmp_path / "Pulumi.moved.yaml"
    moved.write_text(yaml.safe_dump(document))
    return moved


def test_inventory_groups_hold_the_stack_hosts(tmp_path):
    out = render(tmp_path)
    children = read(out / "inventory.yml")["all"]["children"]
    platform = load_stack(STACK)
    assert set(children) == {"database", "database_replica", "app", "proxy", "monitoring"}
    assert children["database_replica"]["hosts"] == {}, "no standby in this stack"
    assert children["app"]["hosts"] == {h.name: {"ansible_host": h.address} for h in platform.onprem.app}
    assert list(children["database"]["hosts"]) == [platform.onprem.database.name]


def test_database_settings_of_the_spec_reach_the_role(tmp_path):
    """The role derives the rest from the host's facts (eolake_spec.tuning); the spec's own settings win."""
    document = yaml.safe_load(STACK.read_text())
    document["config"]["eolake:platform"]["database"] |= {"disk": "hdd", "settings": {"work_mem": "64MB"}}
    edited = tmp_path / "Pulumi.tuned.yaml"
    edited.write_text(yaml.safe_dump(document))
    database = read(render(tmp_path, edited) / "group_vars" / "database.yml")
    assert database["eolake_database_settings"] == {"work_mem": "64MB"}
    assert database["eolake_database_disk"] == "hdd" and database["eolake_database_max_connections"] == 200


def test_every_service_and_worker_runs_on_every_app_host_with_its_settings(tmp_path):
    out = render(tmp_path)
    platform = load_stack(STACK)
    for host in platform.onprem.app:
        units = {u["name"]: u for u in read(out / "host_vars" / f"{host.name}.yml")["eolake_services_units"]}
        assert set(platform.enabled_services) <= set(units)
        assert "downloads-worker" in units
        for name in platform.enabled_services:
            m, env = manifests()[name], units[name]["environment"]
            expected = platform.service_env(
                name, {n: f"http://{host.address}:{manifests()[n].port}" for n in platform.enabled_services}
            )
            expected.pop(m.env_prefix + "TRUSTED_PROXIES")  # the proxy and app hosts are added (below)
            assert expected.items() <= env.items()
            assert env[m.env_prefix + "HOST"] == host.address and env[m.env_prefix + "PORT"] == str(m.port)
            assert units[name]["module"] == m.module and units[name]["probe"] == m.readiness
        worker = units["downloads-worker"]
        assert worker["module"] == "eolake_downloads.worker"
        assert worker["environment"]["EOLAKE_DOWNLOADS_WORKER_METRICS_PORT"] == str(worker["port"])
        assert units["catalog"]["memory_max"] == "1G"
        assert units["thesaurus"]["prepare"] == "eolake_thesaurus.prepare"


def test_peers_are_internal_addresses_on_the_same_host(tmp_path):
    out = render(tmp_path)
    for host in load_stack(STACK).onprem.app:
        units = {u["name"]: u for u in read(out / "host_vars" / f"{host.name}.yml")["eolake_services_units"]}
        peers = json.loads(units["search"]["environment"]["EOLAKE_SEARCH_PEERS"])
        assert peers["catalog"]["url"] == f"http://{host.address}:8081/stac"
        assert peers["thesaurus"]["url"] == f"http://{host.address}:8085/thesaurus"
        assert peers["catalog"]["public_url"] == "https://eolake.example.internal/stac"


def test_moving_a_prefix_moves_the_proxy_route_and_the_callers(tmp_path):
    out = render(tmp_path, moved_stack(tmp_path, "catalog", "/api/catalog"))
    routes = {r["service"]: r["path"] for r in read(out / "group_vars" / "all.yml")["eolake_proxy_routes"]}
    assert routes["catalog"] == "/api/catalog"
    paths = [r["path"] for r in read(out / "group_vars" / "all.yml")["eolake_proxy_routes"]]
    assert paths[-1] == "/" and paths == sorted(paths, key=len, reverse=True)
    app1 = load_stack(STACK).onprem.app[0]
    units = {u["name"]: u for u in read(out / "host_vars" / f"{app1.name}.yml")["eolake_services_units"]}
    assert units["catalog"]["environment"]["EOLAKE_CATALOG_ROOT_PATH"] == "/api/catalog"
    for caller in ("search", "downloads", "timeseries"):
        peers = json.loads(units[caller]["environment"][f"EOLAKE_{caller.upper()}_PEERS"])
        assert peers["catalog"] == {
            "url": f"http://{app1.address}:8081/api/catalog",
            "public_url": "https://eolake.example.internal/api/catalog",
        }
    assert json.loads(units["web"]["environment"]["EOLAKE_WEB_SERVICES"])["catalog"] == "/api/catalog"


def test_a_read_replica_in_the_stack_reaches_the_services_that_read_from_one(tmp_path):
    document = yaml.safe_load(STACK.read_text())
    document["config"]["eolake:platform"]["database"]["replica"] = {"host": "192.0.2.20", "port": 5432}
    stack = tmp_path / "Pulumi.replica.yaml"
    stack.write_text(yaml.safe_dump(document))
    out = render(tmp_path, stack)
    url = read(out / "group_vars" / "app.yml")["eolake_services_read_database_url"]
    assert url == "postgresql://eolake_app:{{ eolake_app_database_password }}@192.0.2.20:5432/eolake"
    units = {u["name"]: u for u in read(out / "host_vars" / "eolake-app1.yml")["eolake_services_units"]}
    assert units["catalog"]["reads_from_replica"] and units["tiles"]["reads_from_replica"]
    assert not units["downloads"]["reads_from_replica"], "orders are read where they were written"
    plain = render(tmp_path / "plain")
    assert read(plain / "group_vars" / "app.yml")["eolake_services_read_database_url"] == ""


def test_a_standby_host_is_cloned_from_the_primary_and_the_services_read_there(tmp_path):
    document = yaml.safe_load(STACK.read_text())
    document["config"]["eolake:platform"]["onprem"]["database_replica"] = {
        "name": "eolake-db2",
        "address": "192.0.2.13",
    }
    stack = tmp_path / "Pulumi.standby.yaml"
    stack.write_text(yaml.safe_dump(document))
    out = render(tmp_path, stack)
    groups = read(out / "inventory.yml")["all"]["children"]
    assert groups["database_replica"]["hosts"] == {"eolake-db2": {"ansible_host": "192.0.2.13"}}
    primary, standby = read(out / "group_vars" / "database.yml"), read(out / "group_vars" / "database_replica.yml")
    assert primary["eolake_database_standbys"] == [{"slot": "eolake_eolake_db2", "address": "192.0.2.13"}]
    assert "eolake_database_primary_address" not in primary
    assert standby["eolake_database_primary_address"] == "192.0.2.10"
    assert standby["eolake_database_replication_slot"] == "eolake_eolake_db2"
    assert standby["eolake_database_listen_address"] == "192.0.2.13"
    same = (
        "eolake_database_clients",
        "eolake_database_roles",
        "eolake_database_max_connections",
        "eolake_database_name",
    )
    assert {k: standby[k] for k in same} == {k: primary[k] for k in same}, "the services reach the standby alike"
    assert "database-eolake_replication" in read(out / "group_vars" / "all.yml")["eolake_database_replication_password"]
    url = read(out / "group_vars" / "app.yml")["eolake_services_read_database_url"]
    assert url == "postgresql://eolake_app:{{ eolake_app_database_password }}@192.0.2.13:5432/eolake"
    units = {u["name"]: u for u in read(out / "host_vars" / "eolake-app1.yml")["eolake_services_units"]}
    assert units["catalog"]["reads_from_replica"] and not units["downloads"]["reads_from_replica"]
    node = next(
        j for j in read(out / "group_vars" / "monitoring.yml")["eolake_monitoring_targets"] if j["job"] == "node"
    )
    assert "192.0.2.13:9100" in node["targets"]
    plain = read(render(tmp_path / "plain") / "group_vars" / "database.yml")
    assert plain["eolake_database_standbys"] == []


def test_scrape_targets_are_labelled_like_the_embedded_target(tmp_path):
    out = render(tmp_path)
    jobs = {j["job"]: j for j in read(out / "group_vars" / "monitoring.yml")["eolake_monitoring_targets"]}
    platform = load_stack(STACK)
    for name in platform.enabled_services:
        assert jobs[f"eolake-{name}"]["labels"] == {"service": name}
        assert jobs[f"eolake-{name}"]["targets"] == [
            f"{h.address}:{manifests()[name].port}" for h in platform.onprem.app
        ]
    assert {"postgres", "node", "eolake-downloads-worker"} <= set(jobs)


def test_no_secret_is_written_and_credentials_survive_a_new_render(tmp_path):
    out = render(tmp_path)
    credentials = out / "credentials"
    credentials.mkdir()
    (credentials / "api-key-admin").write_text("kept\n")
    render(tmp_path)
    assert (credentials / "api-key-admin").read_text() == "kept\n"
    text = "\n".join(p.read_text() for p in out.rglob("*.yml"))
    assert "kept" not in text
    assert text.count("lookup(''ansible.builtin.password''") >= 4  # YAML doubles the quotes
    assert not any(
        key.endswith(("PASSWORD", "TOKEN_KEY", "DATABASE_URL"))
        for host in out.glob("host_vars/*.yml")
        for unit in read(host)["eolake_services_units"]
        for key in unit["environment"]
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            "onprem: {database: {name: db, address: 10.0.0.1}, app: [], proxy: {name: p, address: 10.0.0.2}}",
            "onprem.app: List should have at least 1 item",
        ),
        (
            "onprem: {database: {name: db, address: 10.0.0.1}, app: [{name: db, address: 10.0.0.3}], "
            "proxy: {name: p, address: 10.0.0.2}}",
            "host db has two addresses",
        ),
        (
            "onprem: {database: {name: db, address: 10.0.0.1}, app: [{name: a, address: 10.0.0.3}], "
            "proxy: {name: p, address: 10.0.0.2}, tls: {certificate: /x.crt}}",
            "needs both certificate and key",
        ),
        (
            "onprem: {database: {name: db, address: 10.0.0.1}, database_replica: {name: db, address: 10.0.0.1}, "
            "app: [{name: a, address: 10.0.0.3}], proxy: {name: p, address: 10.0.0.2}}",
            "database_replica must be another host than onprem.database",
        ),
        (
            "database: {embedded: false, replica: {host: 10.0.0.9, port: 5432}}\n    "
            "onprem: {database: {name: db, address: 10.0.0.1}, database_replica: {name: db2, address: 10.0.0.4}, "
            "app: [{name: a, address: 10.0.0.3}], proxy: {name: p, address: 10.0.0.2}}",
            "give one of them",
        ),
    ],
)
def test_bad_stack_gives_one_line_with_the_file(tmp_path, capsys, change, expected):
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_text(
        "config:\n  eolake:platform:\n    name: bad\n    base_url: https://x.example\n"
        "    services: {catalog: {}}\n    database: {embedded: false}\n"
        "    storage: {path: /srv/data}\n    " + change + "\n"
    )
    out = tmp_path / "out"
    assert cli(["render", "--stack", str(stack), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.count(f"{stack}:") == 1 and expected in error.split(f"{stack}:")[1], error
    assert not out.exists(), "nothing is written for an invalid stack"


def test_services_believe_the_proxy_and_the_app_hosts_so_each_client_has_its_own_rate_limit(tmp_path):
    out = render(tmp_path)
    platform = load_stack(STACK)
    host = platform.onprem.app[0]
    units = {u["name"]: u for u in read(out / "host_vars" / f"{host.name}.yml")["eolake_services_units"]}
    trusted = TrustedProxies(json.loads(units["catalog"]["environment"]["EOLAKE_CATALOG_TRUSTED_PROXIES"]))
    for caller in (platform.onprem.proxy, *platform.onprem.app):
        assert trusted.client(caller.address, ["203.0.113.7"]) == "203.0.113.7", caller
    assert trusted.client("198.51.100.9", ["203.0.113.7"]) == "198.51.100.9", "a stranger's header is not believed"


def test_a_host_named_by_dns_needs_its_network_in_trusted_proxies(tmp_path, capsys):
    document = yaml.safe_load(STACK.read_text())
    for role in ("proxy", "monitoring"):
        document["config"]["eolake:platform"]["onprem"][role]["address"] = "proxy.example.internal"
    stack = tmp_path / "Pulumi.named.yaml"
    stack.write_text(yaml.safe_dump(document))
    assert cli(["render", "--stack", str(stack), "--out", str(tmp_path / "out")]) == 2
    assert "trusted_proxies" in capsys.readouterr().err and not (tmp_path / "out").exists()
    document["config"]["eolake:platform"]["trusted_proxies"] = ["127.0.0.0/8", "192.0.2.0/24"]
    stack.write_text(yaml.safe_dump(document))
    assert cli(["render", "--stack", str(stack), "--out", str(tmp_path / "out")]) == 0


def test_several_app_hosts_with_local_storage_need_a_shared_filesystem(tmp_path, capsys):
    document = yaml.safe_load(STACK.read_text())
    document["config"]["eolake:platform"]["onprem"]["shared_storage"] = False
    stack = tmp_path / "Pulumi.unshared.yaml"
    stack.write_text(yaml.safe_dump(document))
    assert cli(["render", "--stack", str(stack), "--out", str(tmp_path / "out")]) == 2
    assert "shared filesystem" in capsys.readouterr().err


@pytest.mark.slow
def test_playbooks_are_ansible_lint_production_clean():
    root = STACK.parents[1]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-lint"), "--profile", "production", "--nocolor", "playbooks/"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "0 failure(s), 0 warning(s)" in result.stderr + result.stdout
