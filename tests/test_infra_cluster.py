"""The cluster layer (spec `cluster:`), under Pulumi mocks: what `pulumi up` would create on OpenStack for every stack
that provisions its cluster, and that `cluster: existing` stacks create nothing of it."""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import subprocess
import threading
from ipaddress import ip_network

import pytest
import yaml
from infra_program import STACKS, config, program, render, rendered_files, write_stack

from eolake_infra.cluster import cloudinit, ready
from eolake_infra.cluster.openstack import EVERYONE, INGRESS_PORTS, NODE_PORTS
from eolake_spec import SpecError, load_stack

PROVISIONED = [s for s in STACKS if load_stack(s).cluster.kind == "openstack"]
EXISTING = [s for s in STACKS if load_stack(s).cluster.kind == "existing"]
POOLS = ("control-plane", "worker", "database")


def test_the_stacks_cover_both_kinds():
    assert "prod" in PROVISIONED and EXISTING
    assert load_stack("prod").cluster.control_plane.count == 3


def of_type(stack: str, kind: str) -> list[render.Recorded]:
    return [r for r in program(stack).resources if r.type == kind]


def by_name(stack: str, kind: str) -> dict[str, render.Recorded]:
    return {r.name: r for r in of_type(stack, kind)}


def instances(stack: str, pool: str) -> list[render.Recorded]:
    return [r for r in of_type(stack, "openstack:compute/instance:Instance") if r.name.startswith(f"node-{pool}-")]


@pytest.mark.parametrize("stack", PROVISIONED)
def test_servers_counts_flavours_image(stack):
    spec = load_stack(stack).cluster
    wanted = {"control-plane": spec.control_plane, "worker": spec.workers, "database": spec.database}
    for pool, nodes in wanted.items():
        servers = instances(stack, pool)
        assert len(servers) == (nodes.count if nodes else 0), pool
        for server in servers:
            assert server.state["flavorName"] == nodes.flavor
            assert server.state["imageName"] == spec.image == "Ubuntu 24.04 LTS"
            assert server.state["metadata"] == {"eolake-pool": pool}
            assert "userData" in server.state and server.state["userData"] == render.SECRET
            assert "floatingIp" not in json.dumps(server.state)  # no public address on a node


@pytest.mark.parametrize("stack", PROVISIONED)
def test_every_pool_is_spread_by_an_anti_affinity_group(stack):
    groups = by_name(stack, "openstack:compute/serverGroup:ServerGroup")
    for pool in POOLS:
        servers = instances(stack, pool)
        if not servers:
            continue
        group = groups[f"servergroup-{pool}"]
        assert group.state["policies"] == "anti-affinity"
        assert all(s.state["schedulerHints"] == [{"group": f"{group.name}-id"}] for s in servers), pool


@pytest.mark.parametrize("stack", PROVISIONED)
def test_security_groups_open_exactly_the_needed_ports(stack):
    spec = load_stack(stack).cluster
    subnet = str(spec.subnet_cidr)
    group_of = {
        f"{r.name}-id": r.name.removeprefix("secgroup-")
        for r in of_type(stack, "openstack:networking/secGroup:SecGroup")
    }
    rules = set()
    for rule in of_type(stack, "openstack:networking/secGroupRule:SecGroupRule"):
        s = rule.state
        assert s["direction"] == "ingress" and s["ethertype"] == "IPv4"
        source = group_of[s["remoteGroupId"]] if "remoteGroupId" in s else s["remoteIpPrefix"]
        rules.add((group_of[s["securityGroupId"]], s["protocol"], s["portRangeMin"], s["portRangeMax"], source))
    between_nodes = {(listener, protocol, low, high, caller) for protocol, low, high, listener, caller in NODE_PORTS}
    from_load_balancers = {
        ("servers", "tcp", 6443, 6443, subnet),
        ("servers", "tcp", 9345, 9345, subnet),
        ("workers", "tcp", 80, 80, subnet),
        ("workers", "tcp", 443, 443, subnet),
    }
    assert rules == between_nodes | from_load_balancers
    assert ("servers", "tcp", 2379, 2380, "servers") in rules  # etcd: the control plane alone
    assert not any(low <= 22 <= high for _, _, low, high, _ in rules)  # no SSH


@pytest.mark.parametrize("stack", PROVISIONED)
def test_only_http_and_https_are_open_to_everyone(stack):
    spec = load_stack(stack).cluster
    admins = {str(n) for n in spec.admin_cidrs}
    ports = {}
    for listener in of_type(stack, "openstack:loadbalancer/listener:Listener"):
        allowed = set(listener.state["allowedCidrs"])
        ports[listener.state["protocolPort"]] = allowed
        if EVERYONE in allowed or any(ip_network(c).prefixlen == 0 for c in allowed):
            assert listener.state["protocolPort"] in INGRESS_PORTS, listener.name
    assert ports[6443] == admins | {str(spec.subnet_cidr)}
    assert ports[9345] == {str(spec.subnet_cidr)}
    assert ports[80] == ports[443] == {EVERYONE}
    floating = of_type(stack, "openstack:networking/floatingIp:FloatingIp")
    assert sorted(f.name for f in floating) == ["floating-ip-api", "floating-ip-ingress"]
    assert {f.state["portId"] for f in floating} == {"lb-api-vip-port", "lb-ingress-vip-port"}


@pytest.mark.parametrize("stack", PROVISIONED)
def test_load_balancer_members(stack):
    """The API pools hold every server, the ingress pools every worker (never a database or control-plane node);
    the ingress passes the client's address on (PROXY), which ingress-nginx is configured to read."""
    pools = by_name(stack, "openstack:loadbalancer/pool:Pool")
    members = of_type(stack, "openstack:loadbalancer/member:Member")
    ports = by_name(stack, "openstack:networking/port:Port")
    for name, pool_members in (
        ("api", "control-plane"),
        ("supervisor", "control-plane"),
        ("ingress-80", "worker"),
        ("ingress-443", "worker"),
    ):
        mine = [m for m in members if m.state["poolId"] == f"pool-{name}-id"]
        expected = {
            ports[f"port-{s.name.removeprefix('node-')}"].state["allFixedIps"][0]
            for s in instances(stack, pool_members)
        }
        assert {m.state["address"] for m in mine} == expected and len(mine) == len(expected), name
        assert pools[f"pool-{name}"].state["protocol"] == ("PROXY" if name.startswith("ingress") else "TCP")
    assert len(of_type(stack, "openstack:loadbalancer/monitor:Monitor")) == len(pools)


@pytest.mark.parametrize("stack", PROVISIONED)
def test_buckets_and_their_credentials_reach_the_platform_as_secrets(stack):
    spec = load_stack(stack)
    containers = of_type(stack, "openstack:objectstorage/container:Container")
    backups = spec.kubernetes.postgres.backup.destination.removeprefix("s3://").split("/")[0]
    assert sorted(c.state["name"] for c in containers) == sorted({spec.storage.bucket, backups})
    assert all(c.retain_on_delete for c in containers)  # a `pulumi destroy` never takes the data with it
    p = program(stack)

    def handed(name: str) -> dict:
        values = p.inputs[p.recorded("Secret", name).urn]["stringData"]  # what the cluster layer put there
        assert p.one("Secret", name)["stringData"] == dict.fromkeys(values, render.SECRET)  # in the state: encrypted
        return values

    assert handed(spec.kubernetes.secrets.storage) == {
        "AWS_ACCESS_KEY_ID": "storage-credentials-access",
        "AWS_SECRET_ACCESS_KEY": "storage-credentials-secret",
    }
    assert handed(spec.kubernetes.postgres.backup.credentials_secret) == {
        "ACCESS_KEY_ID": "storage-credentials-access",
        "ACCESS_SECRET_KEY": "storage-credentials-secret",
    }
    cloud_conf = handed(cloudinit.CINDER_CSI_SECRET)["cloud.conf"].splitlines()
    assert "application-credential-id=cinder-csi-credentials-id" in cloud_conf
    assert "application-credential-secret=cinder-csi-credentials-secret" in cloud_conf
    assert f"auth-url={str(spec.cluster.auth_url).rstrip('/')}" in cloud_conf
    assert p.one("Secret", cloudinit.CINDER_CSI_SECRET)["metadata"]["namespace"] == "kube-system"
    storage_class = p.one("StorageClass", "eolake-db")
    assert storage_class["provisioner"] == "cinder.csi.openstack.org" and storage_class["reclaimPolicy"] == "Retain"
    assert p.one("Cluster", spec.kubernetes.postgres.cluster_name)["spec"]["storage"]["storageClass"] == "eolake-db"


@pytest.mark.parametrize("stack", PROVISIONED)
def test_no_secret_in_clear_anywhere_in_the_state(stack):
    """Every value the mocks make up for a secret (token, keys, credentials) is marked secret wherever it lands."""
    state = json.dumps([r.state for r in program(stack).resources])
    for made_up in ("rke2-token-result", "storage-credentials-secret", "cinder-csi-credentials-secret", "PRIVATE KEY"):
        assert made_up not in state, made_up
    assert "storage-credentials-access" in state  # the access key id is not a secret: the check can see values


@pytest.mark.parametrize("stack", PROVISIONED)
def test_database_runs_on_its_own_nodes(stack):
    spec = load_stack(stack)
    affinity = program(stack).one("Cluster", spec.kubernetes.postgres.cluster_name)["spec"]["affinity"]
    if spec.cluster.database:
        assert spec.cluster.database.count >= spec.kubernetes.postgres.instances
        assert affinity["nodeSelector"] == {"eolake.io/database": "true"}
        assert affinity["tolerations"] == [
            {"key": "eolake.io/database", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        ]
    else:
        assert "nodeSelector" not in affinity and "tolerations" not in affinity


@pytest.mark.parametrize("stack", PROVISIONED)
def test_kubeconfig_flows_into_the_platform_layer(stack):
    p = program(stack)
    (provider,) = of_type(stack, "pulumi:providers:kubernetes")
    assert provider.state["kubeconfig"] == render.SECRET
    (ready,) = of_type(stack, "pulumi-python:dynamic:Resource")
    assert ready.urn in provider.dependencies
    assert {s.urn for s in of_type(stack, "openstack:compute/instance:Instance")} <= set(ready.dependencies)
    reference = f"{provider.urn}::{provider.name}-id"
    platform = [r for r in p.resources if r.custom and r.type.startswith("kubernetes:")]
    assert len(platform) > 50
    for resource in platform:  # a component's children inherit it: the recorded provider is the effective one
        assert resource.provider == reference, resource.urn
    config = yaml.safe_load(p.inputs[provider.urn]["kubeconfig"])
    api = by_name(stack, "openstack:networking/floatingIp:FloatingIp")["floating-ip-api"]
    assert config["clusters"][0]["cluster"]["server"] == f"https://{api.state['address']}:6443"
    user = config["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]).decode() == render._pem("CERTIFICATE", "admin-certificate")
    assert base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode() == render._pem(
        "CERTIFICATE", "server-ca"
    )


@pytest.mark.parametrize("stack", EXISTING)
def test_existing_cluster_keeps_the_ambient_kubeconfig(stack):
    resources = program(stack).resources
    assert not [r for r in resources if r.type.split(":")[0] in ("openstack", "tls", "random", "pulumi-python")]
    assert not [r for r in resources if r.type.startswith("pulumi:providers:")]
    assert all(r.provider == "" for r in resources if r.type.startswith("kubernetes:"))
    assert not any(name.startswith("cluster/") for name in render.documents(resources))


# ---- the user-data itself ----------------------------------------------------------------------------------------

SETTINGS = cloudinit.Settings(
    token="token-for-the-test",
    supervisor="10.20.1.5",
    api_addresses=["203.0.113.4", "10.20.1.5"],
    reboot_days=["mo", "we"],
    reboot_start="02:00",
    reboot_end="05:00",
    ca={"server-ca.crt": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"},
)
NODES = {
    "first server": cloudinit.Node("control-plane", server=True, first=True),
    "server": cloudinit.Node("control-plane", server=True),
    "worker": cloudinit.Node("worker", server=False),
    "database": cloudinit.Node(
        "database", server=False, labels={"eolake.io/database": "true"}, taints=["eolake.io/database=true:NoSchedule"]
    ),
}


def files(text: str) -> dict[str, str]:
    return {f["path"]: f["content"] for f in yaml.safe_load(text)["write_files"]}


@pytest.mark.parametrize("kind", NODES)
def test_user_data_is_cloud_config_that_installs_the_pinned_rke2(kind):
    node = NODES[kind]
    text = cloudinit.user_data(node, SETTINGS)
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    assert document["runcmd"] == [[cloudinit.INSTALLER, "server" if node.server else "agent"]]
    script = files(text)[cloudinit.INSTALLER].splitlines()
    download = next(i for i, line in enumerate(script) if line.startswith("curl "))
    check = next(i for i, line in enumerate(script) if "sha256sum --check" in line)
    unpack = next(i for i, line in enumerate(script) if line.startswith("tar "))
    assert download < check < unpack and script[1] == "set -eu"  # a mismatch stops before anything is unpacked
    assert cloudinit.RKE2_SHA256 in script[check] and len(cloudinit.RKE2_SHA256) == 64
    assert cloudinit.RKE2_URL in script[download] and "v1.36.4%2Brke2r1" in cloudinit.RKE2_URL
    config = yaml.safe_load(files(text)[cloudinit.RKE2_CONFIG])
    assert config["token"] == SETTINGS.token
    assert ("server" in config) is (kind != "first server")
    assert config.get("node-label", []) == [f"{k}={v}" for k, v in node.labels.items()]
    assert config.get("node-taint", []) == node.taints
    if node.server:
        assert config["cni"] == "canal" and config["tls-san"] == SETTINGS.api_addresses
    assert (f"{cloudinit.TLS}/server-ca.crt" in files(text)) is node.first  # only the first server gets the CAs
    permissions = {f["path"]: f["permissions"] for f in document["write_files"]}
    assert permissions[cloudinit.RKE2_CONFIG] == "0600"


def test_a_joined_cluster_never_reinitialises():
    config = yaml.safe_load(
        files(cloudinit.user_data(NODES["first server"], cloudinit.Settings(**{**SETTINGS.__dict__, "joined": True})))[
            cloudinit.RKE2_CONFIG
        ]
    )
    assert config["server"] == "https://10.20.1.5:9345"


def test_servers_install_the_add_ons():
    server = files(cloudinit.user_data(NODES["server"], SETTINGS))
    assert not any(
        path.startswith(cloudinit.MANIFESTS) for path in files(cloudinit.user_data(NODES["worker"], SETTINGS))
    )
    charts = {
        yaml.safe_load(text)["metadata"]["name"]: yaml.safe_load(text)
        for path, text in server.items()
        if path.startswith(cloudinit.MANIFESTS)
    }
    operators = {name: charts[name]["spec"] for name in ("cloudnative-pg", "cert-manager")}
    assert operators["cloudnative-pg"]["targetNamespace"] == "cnpg-system"  # the namespace the policies admit
    assert yaml.safe_load(operators["cert-manager"]["valuesContent"]) == {"crds": {"enabled": True}}
    assert all(spec["version"] and spec["createNamespace"] for spec in operators.values())
    csi = charts["openstack-cinder-csi"]["spec"]
    assert csi["version"] == cloudinit.CINDER_CSI_CHART[1]
    assert yaml.safe_load(csi["valuesContent"])["secret"] == {
        "enabled": True,
        "create": False,
        "name": cloudinit.CINDER_CSI_SECRET,
    }
    kured = yaml.safe_load(charts["kured"]["spec"]["valuesContent"])["configuration"]
    assert kured == {
        "rebootDays": ["mo", "we"],
        "startTime": "02:00",
        "endTime": "05:00",
        "timeZone": "UTC",
        "concurrency": 1,
    }
    nginx = yaml.safe_load(charts["rke2-ingress-nginx"]["spec"]["valuesContent"])
    assert nginx["controller"]["config"]["use-proxy-protocol"] == "true"
    apt = server["/etc/apt/apt.conf.d/52eolake-reboots"]
    assert 'Automatic-Reboot "false"' in apt  # kured reboots, drained and one at a time


USER_DATA = [(stack, name) for stack in PROVISIONED for name in render.user_data(stack)]


def test_render_shows_each_kind_of_node():
    assert sorted(name for stack, name in USER_DATA if stack == "prod") == sorted(
        f"cluster/user-data-{kind}.yaml" for kind in ("control-plane", "control-plane-first", "database", "worker")
    )
    assert sorted(name for stack, name in USER_DATA if stack == "staging") == [  # one server, no database pool
        "cluster/user-data-control-plane-first.yaml",
        "cluster/user-data-worker.yaml",
    ]


@pytest.mark.parametrize("stack,name", USER_DATA)
def test_cloud_init_accepts_the_rendered_user_data(stack, name, tmp_path):
    """What `eolake render` shows of each kind of node, through cloud-init's own schema check (the Debian package,
    installed by ./eolake); the secrets in it are the marker, never a value."""
    assert shutil.which("cloud-init"), "cloud-init is missing: run ./eolake (it installs it from apt)"
    text = rendered_files(stack)[name]  # as `eolake render` writes it
    assert yaml.safe_load(files(text)[cloudinit.RKE2_CONFIG])["token"] == render.SECRET
    path = tmp_path / "user-data"
    path.write_text(text)
    answer = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 0 and "Valid cloud-config" in answer.stdout, answer.stdout + answer.stderr


def test_cloud_init_schema_check_catches_a_broken_document(tmp_path):
    path = tmp_path / "user-data"
    path.write_text("#cloud-config\nwrite_files: {path: /etc/x}\nruncmd: 3\n")
    answer = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=60
    )
    assert answer.returncode != 0 and "write_files" in answer.stdout + answer.stderr


# ---- stacks the cluster layer refuses, before anything is created ------------------------------------------------


def refused(tmp_path, edit, error) -> str:
    monitor = render._Monitor()
    with pytest.raises(error) as caught:
        render.run(write_stack(tmp_path, "prod", edit), monitor=monitor)
    assert monitor.recorded == [], "nothing may be created from a refused stack"
    return str(caught.value)


@pytest.mark.parametrize(
    "edit,error,message",
    [
        (
            lambda p: p["cluster"].update(admin_cidrs=["198.51.100.0/24", "0.0.0.0/0"]),
            SpecError,
            "cluster.openstack: Value error, 0.0.0.0/0 opens the API server to the whole Internet",
        ),
        (lambda p: p["cluster"]["control_plane"].update(count=2), SpecError, "etcd needs an odd number"),
        (lambda p: p["cluster"].update(subnet_cidr="10.42.8.0/22"), SpecError, "overlaps RKE2's pod/service network"),
        (lambda p: p["cluster"].update(kind="openstak"), SpecError, "cluster: Input tag 'openstak'"),
        (lambda p: p["cluster"].pop("auth_url"), SpecError, "cluster.openstack.auth_url"),
        (
            lambda p: p["kubernetes"]["postgres"].pop("storage_class"),
            config.InfraError,
            "kubernetes.postgres.storage_class: must be eolake-db",
        ),
        (
            lambda p: p["cluster"]["database"].update(count=2),
            config.InfraError,
            "cluster.database.count: 2 node(s) for 3 PostgreSQL instances",
        ),
        (
            lambda p: p["kubernetes"]["ingress"].pop("controller_namespace"),
            config.InfraError,
            "runs RKE2's ingress-nginx: set controller_namespace: kube-system",
        ),
    ],
    ids=[
        "api-open-to-all",
        "even-control-plane",
        "subnet-overlaps-pods",
        "unknown-kind",
        "no-auth-url",
        "database-storage-class",
        "too-few-database-nodes",
        "ingress-controller",
    ],
)
def test_refused(tmp_path, edit, error, message):
    assert message in refused(tmp_path, edit, error)


# ---- the wait for the new API server ----------------------------------------------------------------------------


@pytest.fixture
def api_server():
    """A loopback API server: every path answers 503 for the first `booting` requests, then 200; CloudNativePG's
    webhook Endpoints list a ready address only after `webhook_after` requests for them."""
    state = {"booting": 2, "webhook_after": 3, "seen": [], "endpoints": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state["seen"].append(self.path)
            if len(state["seen"]) <= state["booting"]:
                self.send_response(503)
                self.end_headers()
                return
            body = b"ok"
            if self.path.endswith("/endpoints/cnpg-webhook-service"):
                state["endpoints"] += 1
                ready = state["endpoints"] > state["webhook_after"]
                body = json.dumps({"subsets": [{"addresses": [{"ip": "10.42.0.7"}]}] if ready else []}).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()


def loopback_kubeconfig(url: str) -> str:
    return yaml.safe_dump({"clusters": [{"cluster": {"server": url}}], "users": [{"user": {}}]})


def test_waits_until_the_cluster_can_take_the_platform(api_server):
    url, state = api_server
    ready.ready(loopback_kubeconfig(url), timeout=60, poll=0.02)
    assert state["seen"][:2] == ["/readyz", "/readyz"]  # booting: nothing further is asked
    assert state["endpoints"] == state["webhook_after"] + 1  # kept waiting while the webhook had no pod
    assert {path for path, _ in ready.CONDITIONS} <= set(state["seen"])
    assert "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusters.postgresql.cnpg.io" in state["seen"]


def test_gives_up_naming_what_is_missing(api_server):
    url, state = api_server
    state["webhook_after"] = 10**6
    with pytest.raises(TimeoutError, match="not ready after 0 s: .*cnpg-webhook-service: no ready pod yet"):
        ready.ready(loopback_kubeconfig(url), timeout=0.3, poll=0.02)
