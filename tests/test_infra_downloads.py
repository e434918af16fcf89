"""The download service on Kubernetes (a stack with downloads enabled): its schema Job runs after pgstac's and
before its pods, and its workers are a Deployment of their own, scaled on the queue depth."""

from __future__ import annotations

from infra_program import Program, render, write_stack


def test_downloads_schema_job_and_workers(tmp_path):
    def edit(p):
        p["services"]["downloads"] = {"replicas": 1, "pool_size": 4}
        p["kubernetes"].setdefault("autoscaling", {})["downloads-worker"] = {"max_replicas": 4}

    stack = write_stack(tmp_path, "staging", edit)
    program = Program(str(stack), render.run(stack))
    api = program.one("Deployment", "downloads")
    worker = program.one("Deployment", "downloads-worker")
    (c,) = worker["spec"]["template"]["spec"]["containers"]
    assert (
        c["command"][-1] == "eolake_downloads.worker"
        and c["image"] == api["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    assert c["securityContext"]["readOnlyRootFilesystem"]
    # The worker's own probes on its metrics port (eolake_downloads.worker.serve_probes): not /metrics, which
    # answers whatever the worker's state.
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp", "/var/lib/eolake"}
    env = {e["name"]: e for e in c["env"]}
    assert "secretKeyRef" in env["EOLAKE_DATABASE_PASSWORD"]["valueFrom"]
    assert env["EOLAKE_DOWNLOADS_WORKER_METRICS_PORT"]["value"] == "9090"
    hpa = program.one("HorizontalPodAutoscaler", "downloads-worker")
    external = next(m["external"] for m in hpa["spec"]["metrics"] if m["type"] == "External")
    assert external["metric"]["name"] == "eolake_download_queue_depth" and hpa["spec"]["maxReplicas"] == 4
    assert program.one("PodDisruptionBudget", "downloads-worker")
    policy = program.one("NetworkPolicy", "downloads-worker")["spec"]
    assert policy["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9090}]
    monitor = program.one("PodMonitor", "downloads-worker")["spec"]["podMetricsEndpoints"][0]
    assert {"targetLabel": "service", "replacement": "downloads"} in monitor["relabelings"]

    config = program.one("ConfigMap", "downloads-config")["data"]
    assert config["EOLAKE_DOWNLOADS_STORAGE_KIND"] == "s3" and config["EOLAKE_DOWNLOADS_S3_BUCKET"]

    (job,) = [j for j in program.of_kind("Job") if j["metadata"]["name"].startswith("downloads-schema-")]
    (jc,) = job["spec"]["template"]["spec"]["containers"]
    assert jc["command"][-3:] == ["eolake_downloads.schema", "", "eolake_app"]
    recorded = program.recorded("Job", job["metadata"]["name"])
    pgstac = next(
        r
        for r in program.resources
        if r.manifest and r.manifest["kind"] == "Job" and r.manifest["metadata"]["name"].startswith("pgstac-migrate-")
    )
    assert pgstac.urn in recorded.dependencies
    for deployment in ("downloads", "downloads-worker"):
        assert recorded.urn in program.recorded("Deployment", deployment).dependencies
