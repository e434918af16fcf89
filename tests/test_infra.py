"""Invariants of the Kubernetes program, for every stack and every enabled service (pulumi set_mocks)."""

from __future__ import annotations

import hashlib
import json

import pytest
from infra_program import STACKS, program, releases, render

from eolake_spec import load_stack

CASES = [(stack, name) for stack in STACKS for name in load_stack(stack).enabled_services]


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("stack,name", CASES)
def test_deployment_probes_resources_rollout(stack, name):
    deployment = program(stack).one("Deployment", name)
    c = container(deployment)
    assert c["ports"][0]["name"] == "http"
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    spec = load_stack(stack).services[name].resources
    assert c["resources"] == {
        "requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
        "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit},
    }
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    keys = {t["topologyKey"] for t in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}


def assert_restricted(pod: dict, c: dict) -> None:
    """Pod Security Standard `restricted`, non-root uid 10001, and only emptyDirs writable (/tmp among them)."""
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert all(set(v) & {"emptyDir", "secret", "configMap"} for v in volumes.values()), volumes
    tmp = {m["name"] for m in c["volumeMounts"] if m["mountPath"] == "/tmp"}
    assert tmp and all("emptyDir" in volumes[name] for name in tmp)
    for mount in c["volumeMounts"]:
        assert mount.get("readOnly") or "emptyDir" in volumes[mount["name"]], mount


@pytest.mark.parametrize("stack,name", CASES)
def test_restricted_security_context(stack, name):
    deployment = program(stack).one("Deployment", name)
    assert_restricted(deployment["spec"]["template"]["spec"], container(deployment))


@pytest.mark.parametrize("stack", STACKS)
def test_every_container_of_every_pod_is_restricted(stack):
    """Init containers (the thesaurus index), workers and Jobs too: the namespace enforces `restricted`, so one
    container out of line would keep its whole pod from starting."""
    checked = 0
    for kind in ("Deployment", "Job"):
        for workload in program(stack).of_kind(kind):
            pod = workload["spec"]["template"]["spec"]
            for c in [*pod.get("initContainers", []), *pod["containers"]]:
                assert_restricted(pod, c)
                checked += 1
    platform = load_stack(stack)
    workers = sum(1 for n in platform.enabled_services if platform.manifest(n).worker)
    prepared = sum(1 for n in platform.enabled_services if platform.manifest(n).prepare)
    assert checked >= len(platform.enabled_services) + workers + prepared + 1  # + the pgstac migrations


WORKERS = [
    (stack, name)
    for stack in STACKS
    for name in load_stack(stack).enabled_services
    if load_stack(stack).manifest(name).worker
]


@pytest.mark.parametrize("stack,service", WORKERS)
def test_job_workers_have_the_production_shape(stack, service):
    """The same invariants as a service's for its workers: probes on their own state, resources, rollout, PDB,
    HPA on the queue depth, NetworkPolicy, config from the service's ConfigMap, secrets by reference."""
    p, platform, name = program(stack), load_stack(stack), f"{service}-worker"
    worker = platform.manifest(service).worker
    deployment = p.one("Deployment", name)
    c = container(deployment)
    assert c["command"][-2:] == ["-m", worker.module]
    assert c["ports"] == [{"name": "metrics", "containerPort": worker.metrics_port, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": worker.liveness, "port": "metrics"}
    assert c["startupProbe"]["httpGet"] == {"path": worker.liveness, "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": worker.readiness, "port": "metrics"}
    spec = platform.services[service].resources
    assert c["resources"]["limits"] == {"cpu": spec.cpu_limit, "memory": spec.memory_limit}
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert p.one("PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = p.one("HorizontalPodAutoscaler", name)["spec"]
    assert hpa["scaleTargetRef"]["name"] == name and hpa["minReplicas"] == deployment["spec"]["replicas"]
    external = next(m["external"] for m in hpa["metrics"] if m["type"] == "External")
    assert external["metric"] == {"name": worker.queue_metric, "selector": {"matchLabels": {"service": service}}}
    assert external["metric"]["name"] == releases.ADAPTER_EXTERNAL_RULE["name"]["as"]
    policy = p.one("NetworkPolicy", name)["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert c["envFrom"] == [{"configMapRef": {"name": f"{service}-config"}}]
    assert all("valueFrom" in e for e in c["env"] if e["name"] in ("EOLAKE_DATABASE_PASSWORD", "AWS_SECRET_ACCESS_KEY"))
    url = next(e for e in c["env"] if e["name"].endswith("_DATABASE_URL"))
    assert "$(EOLAKE_DATABASE_PASSWORD)" in url["value"]
    # Pulumi leaves the replica count to the HPA after creation, as for the services.
    assert p.recorded("Deployment", name).ignore_changes == ["spec.replicas"]


@pytest.mark.parametrize("stack", STACKS)
def test_images_are_pinned(stack):
    p = program(stack)
    for kind in ("Deployment", "Job"):
        for workload in p.of_kind(kind):
            for c in workload["spec"]["template"]["spec"]["containers"]:
                repository, _, tag = c["image"].rpartition(":")
                assert repository and "/" not in tag and tag not in ("", "latest"), c["image"]


@pytest.mark.parametrize("stack,name", CASES)
def test_pdb_selects_the_pods(stack, name):
    p = program(stack)
    pdb, labels = p.one("PodDisruptionBudget", name), p.one("Deployment", name)["spec"]["template"]["metadata"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels["labels"].items()
    assert p.one("Service", name)["spec"]["selector"].items() <= labels["labels"].items()


@pytest.mark.parametrize("stack,name", CASES)
def test_hpa_on_cpu_and_request_rate(stack, name):
    platform, hpa = load_stack(stack), program(stack).one("HorizontalPodAutoscaler", name)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] == platform.services[name].replicas
    assert hpa["spec"]["maxReplicas"] == program(stack).context.max_replicas(name) >= hpa["spec"]["minReplicas"]
    by_type = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert by_type["Resource"]["resource"]["name"] == "cpu"
    # the adapter serves exactly the metric the HPA asks for, from the kit's own counter
    assert by_type["Pods"]["pods"]["metric"]["name"] == releases.ADAPTER_RULE["name"]["as"]
    assert "eolake_http_requests_total" in releases.ADAPTER_RULE["seriesQuery"]
    adapter = next(
        r for r in program(stack).resources if r.type.endswith("Release") and r.state["name"] == "prometheus-adapter"
    )
    assert adapter.state["values"]["rules"]["custom"] == [releases.ADAPTER_RULE]
    # The HPA owns the replica count once the Deployment exists: a `pulumi up` never resets what it scaled.
    assert program(stack).recorded("Deployment", name).ignore_changes == ["spec.replicas"]


@pytest.mark.parametrize("stack,name", CASES)
def test_network_policies(stack, name):
    p = program(stack)
    deny = p.one("NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny and "egress" not in deny
    assert p.one("NetworkPolicy", "allow-dns")["spec"]["egress"][0]["ports"][0]["port"] == 53
    policy = p.one("NetworkPolicy", name)["spec"]
    port = container(p.one("Deployment", name))["ports"][0]["containerPort"]
    rule, *callers = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    sources = [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in rule["from"]]
    assert sources == [load_stack(stack).kubernetes.ingress.proxy_namespace, "monitoring"]
    ctx = p.context
    calling = sorted(n for n in ctx.services if name in ctx.manifest(n).calls)
    assert [
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for r in callers for peer in r["from"]
    ] == calling
    platform = load_stack(stack)
    poolers = [platform.database.host, *([ctx.read_pooler] if platform.reads_from_replica(name) else [])]
    database = {
        "to": [{"podSelector": {"matchLabels": {"cnpg.io/poolerName": pooler}}} for pooler in poolers],
        "ports": [{"protocol": "TCP", "port": 5432}],
    }
    assert (database in policy["egress"]) is ctx.manifest(name).database
    for egress in policy["egress"]:  # nothing but named peers, and outside addresses never the metadata service
        for peer in egress["to"]:
            assert (
                "podSelector" in peer or "namespaceSelector" in peer or peer["ipBlock"]["except"] == ["169.254.0.0/16"]
            ), peer


@pytest.mark.parametrize("stack,name", CASES)
def test_service_monitor_scrapes_metrics(stack, name):
    p = program(stack)
    monitor = p.one("ServiceMonitor", name)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= p.one("Service", name)["metadata"]["labels"].items()
    # The alerts in monitoring/ select jobs named eolake-<service>, as the embedded Prometheus names them.
    relabel = {r["targetLabel"]: r["replacement"] for r in monitor["spec"]["endpoints"][0]["relabelings"]}
    assert relabel == {"job": f"eolake-{name}", "service": name}


@pytest.mark.parametrize("stack,name", CASES)
def test_config_map_holds_the_spec_and_no_secret(stack, name):
    p = program(stack)
    data = p.one("ConfigMap", f"{name}-config")["data"]
    assert load_stack(stack).service_env(name, p.context.origins).items() <= data.items()
    peers = json.loads(data.get(f"EOLAKE_{name.upper()}_PEERS", "{}"))
    assert sorted(peers) == sorted(p.context.manifest(name).calls)
    for callee, peer in peers.items():  # reached at the cluster DNS name, never the public URL
        assert peer["url"].startswith(f"http://{callee}.{p.context.namespace}.svc.cluster.local:")
    for config_map in p.of_kind("ConfigMap"):
        for value in (config_map.get("data") or {}).values():
            assert "password" not in value.lower() and "postgresql://" not in value
    template = p.one("Deployment", name)["spec"]["template"]
    assert (
        template["metadata"]["annotations"]["checksum/config"]
        == hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    )
    env = container(p.one("Deployment", name))["env"]
    urls = {e["name"].removeprefix(f"EOLAKE_{name.upper()}_"): e["value"] for e in env if e["name"].endswith("_URL")}
    expected = {"DATABASE_URL"} if p.context.manifest(name).database else set()
    expected |= {"READ_DATABASE_URL"} if load_stack(stack).reads_from_replica(name) else set()
    assert {key for key in urls if key.endswith("DATABASE_URL")} == expected
    assert all("$(EOLAKE_DATABASE_PASSWORD)" in urls[key] for key in expected)
    if "READ_DATABASE_URL" in expected:  # the replicas' pooler, the same database and role
        assert urls["READ_DATABASE_URL"] == urls["DATABASE_URL"].replace(
            f"@{p.context.pooler}:", f"@{p.context.read_pooler}:"
        )
        assert f"@{p.context.pooler}-ro:5432/" in urls["READ_DATABASE_URL"]
    assert all("value" not in e for e in env if not e["name"].endswith("_DATABASE_URL"))  # secrets by reference


@pytest.mark.parametrize("stack,name", CASES)
def test_one_component_per_service(stack, name):
    p = program(stack)
    deployment = p.recorded("Deployment", name)
    assert p.type_of(deployment.parent) == f"eolake:service:{name.capitalize()}"
    children = {r.manifest["kind"] for r in p.resources if r.parent == deployment.parent and r.manifest}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ServiceMonitor",
        "ServiceAccount",
    } <= children


@pytest.mark.parametrize("stack,name", CASES)
def test_migrations_complete_before_the_deployment(stack, name):
    p = program(stack)
    (job,) = [
        r
        for r in p.resources
        if r.manifest and r.manifest["kind"] == "Job" and r.manifest["metadata"]["name"].startswith("pgstac-migrate")
    ]
    assert job.urn in p.recorded("Deployment", name).dependencies
    spec = job.manifest["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "OnFailure" and spec["securityContext"]["runAsNonRoot"] is True
    cluster = p.recorded("Cluster", p.context.cluster)
    assert cluster.urn in job.dependencies or cluster.parent in job.dependencies


@pytest.mark.parametrize("stack,instances", [("dev", 1), ("staging", 2), ("prod", 3)])
def test_database_cluster_pooler_backups(stack, instances):
    p = program(stack)
    name = load_stack(stack).kubernetes.postgres.cluster_name
    cluster = p.one("Cluster", name)["spec"]
    assert cluster["instances"] == instances
    assert cluster["backup"]["barmanObjectStore"]["destinationPath"].startswith("s3://")
    platform = load_stack(stack)
    database, machine = platform.database, platform.kubernetes.postgres.machine()
    assert cluster["postgresql"]["parameters"] == database.server_settings(machine)
    assert cluster["postgresql"]["parameters"]["max_connections"] == str(database.max_connections)
    limits = platform.kubernetes.postgres.resources
    assert cluster["resources"]["limits"] == {"cpu": limits.cpu_limit, "memory": limits.memory_limit}
    assert p.one("Pooler", load_stack(stack).database.host)["spec"]["cluster"]["name"] == name
    (backup,) = p.of_kind("ScheduledBackup")
    assert backup["spec"]["cluster"]["name"] == name and backup["spec"]["schedule"]
    assert {"eolake-db-netpol", "eolake-db-pooler-netpol"} <= {
        n["metadata"]["name"] for n in p.of_kind("NetworkPolicy")
    }
    # With replicas, a second pooler in front of them (CloudNativePG's -ro Service), for the services reading there.
    poolers = {pooler["metadata"]["name"]: pooler["spec"]["type"] for pooler in p.of_kind("Pooler")}
    replicas = {"eolake-db-pooler-ro": "ro"} if instances > 1 else {}
    assert poolers == {"eolake-db-pooler": "rw", **replicas}
    if replicas:
        policy = p.one("NetworkPolicy", "eolake-db-pooler-ro-netpol")["spec"]
        (clients,) = policy["ingress"][0]["from"]
        readers = clients["podSelector"]["matchExpressions"][0]["values"]
        assert "catalog" in readers and "downloads" not in readers


def test_database_settings_follow_the_instances_limits_and_the_spec_wins():
    parameters = program("prod").one("Cluster", "eolake-db")["spec"]["postgresql"]["parameters"]
    # prod: 16Gi and 4 CPUs per instance, 400 connections
    assert parameters["shared_buffers"] == "4096MB" and parameters["effective_cache_size"] == "11468MB"
    assert parameters["work_mem"] == "10MB" and parameters["max_parallel_workers"] == "4"
    assert parameters["jit"] == "off" and parameters["random_page_cost"] == "1.1"
    assert parameters["log_min_duration_statement"] == "1s"  # the spec's database.settings
    dev = program("dev").one("Cluster", "eolake-db")["spec"]["postgresql"]["parameters"]
    assert dev["shared_buffers"] == "512MB"  # the 2Gi default


def test_prod_is_highly_available():
    platform, p = load_stack("prod"), program("prod")
    assert all(s.replicas >= 2 for s in platform.enabled_services.values())
    assert p.one("Pooler", platform.database.host)["spec"]["instances"] >= 2


@pytest.mark.parametrize("stack", STACKS)
def test_ingress_same_layout_as_locally(stack):
    platform, p = load_stack(stack), program(stack)
    ingress = p.one("Ingress", "eolake")
    host = platform.base_url.host
    assert ingress["spec"]["tls"] == [{"hosts": [host], "secretName": platform.kubernetes.ingress.tls_secret}]
    paths = {path["path"]: path["backend"]["service"]["name"] for path in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {s.path: name for name, s in platform.enabled_services.items()}
    notes = ingress["metadata"]["annotations"]
    assert notes["cert-manager.io/cluster-issuer"] == platform.kubernetes.ingress.tls_issuer
    assert notes["nginx.ingress.kubernetes.io/proxy-body-size"] == platform.kubernetes.ingress.body_size
    assert notes["nginx.ingress.kubernetes.io/limit-rps"] == str(platform.kubernetes.ingress.rate_limit_rps)


def test_pulumi_secret_is_never_rendered_in_clear():
    resources = render.run("dev", config={"eolake:appDatabasePassword": "s3cr3t-hex-value"})
    secret = next(r.manifest for r in resources if r.manifest and r.manifest["kind"] == "Secret")
    assert secret["stringData"] == {"username": render.SECRET, "password": render.SECRET}
    assert "s3cr3t-hex-value" not in "".join(render.dump(d) for d in render.documents(resources).values())
    assert not [r for r in render.run("dev") if r.manifest and r.manifest["kind"] == "Secret"]


@pytest.mark.parametrize("stack", STACKS)
def test_releases_follow_the_spec(stack):
    on = load_stack(stack).kubernetes.releases
    names = {r.state["name"] for r in program(stack).resources if r.type == "kubernetes:helm.sh/v3:Release"}
    # Matomo and the identity provider are external prerequisites (infra/README.md), never half-deployed here.
    wanted = {
        "kube-prometheus-stack": on.kube_prometheus_stack,
        "prometheus-adapter": on.prometheus_adapter,
        "jaeger": on.jaeger,
    }
    assert names == {name for name, enabled in wanted.items() if enabled}


def test_migrate_image_pins_what_uv_lock_pins():
    import re
    import tomllib

    from eolake.paths import REPO_ROOT

    locked = {p["name"]: p["version"] for p in tomllib.loads((REPO_ROOT / "uv.lock").read_text())["package"]}
    dockerfile = (REPO_ROOT / "infra" / "images" / "migrate" / "Dockerfile").read_text()
    pinned = dict(re.findall(r'"([a-z-]+)\[[a-z]+\]==([0-9.]+)"', dockerfile))
    assert pinned == {"pypgstac": locked["pypgstac"], "psycopg": locked["psycopg"]}


@pytest.mark.parametrize("stack", STACKS)
def test_tiles_reads_the_bucket_through_gdal(stack):
    """GDAL (titiler's reader) takes its S3 settings from AWS_* variables, not the service's own."""
    p, storage = program(stack), load_stack(stack).storage
    data = p.one("ConfigMap", "tiles-config")["data"]
    host = storage.endpoint.removeprefix("https://")
    assert {k: v for k, v in data.items() if k.startswith("AWS_")} == {
        "AWS_S3_ENDPOINT": host,
        "AWS_HTTPS": "YES",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }
    env = {e["name"]: e for e in container(p.one("Deployment", "tiles"))["env"]}
    secret = load_stack(stack).kubernetes.secrets.storage
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}
    for other in ("catalog", "timeseries", "downloads"):  # only GDAL readers get GDAL's settings
        assert not [k for k in p.one("ConfigMap", f"{other}-config")["data"] if k.startswith("AWS_")]


def test_gdal_settings_follow_the_storage_section():
    from eolake_spec.platform import Storage

    assert Storage(kind="s3", bucket="b", endpoint="http://minio:9000", region="eu-west-3").gdal_env() == {
        "AWS_S3_ENDPOINT": "minio:9000",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_REGION": "eu-west-3",
    }
    assert Storage(kind="s3", bucket="b", region="eu-west-3").gdal_env() == {
        "AWS_VIRTUAL_HOSTING": "TRUE",
        "AWS_REGION": "eu-west-3",
    }  # AWS itself
    assert Storage(kind="local").gdal_env() == {}
    with pytest.raises(ValueError, match="endpoint"):
        Storage(kind="s3", bucket="b", endpoint="minio:9000/path")


STORAGE_READERS = [
    (stack, name)
    for stack in STACKS
    for name in load_stack(stack).enabled_services
    if load_stack(stack).manifest(name).storage != "none"
]


@pytest.mark.parametrize("stack,name", STORAGE_READERS)
def test_storage_readers_take_the_stacks_bucket_from_their_config(stack, name, monkeypatch):
    """The rendered ConfigMap, read by the service's own settings class as the pod reads its environment: the
    stack's bucket, and for the tiles an allow-list that admits its objects (an empty one refuses every asset)."""
    p, storage = program(stack), load_stack(stack).storage
    for key, value in p.one("ConfigMap", f"{name}-config")["data"].items():
        monkeypatch.setenv(key, value)
    settings = p.context.manifest(name).settings_class()()
    if name != "tiles":
        assert (settings.storage_kind, settings.s3_bucket) == ("s3", storage.bucket)
    else:  # GDAL reads the bucket (AWS_* settings, test_tiles_reads_the_bucket_through_gdal); it opens what is allowed
        from eolake_tiles.guard import AllowList, AssetNotAllowed

        allow = AllowList(settings.storage_path, settings.allowed_prefixes)
        asset = f"s3://{storage.bucket}/hydrology/wse.tif"
        assert allow.check(asset) == asset
        with pytest.raises(AssetNotAllowed):
            allow.check(f"s3://{storage.bucket}-other/hydrology/wse.tif")
