"""What a service with job workers adds (the download service): its schema Job and a worker Deployment.

- The schema Job runs the service's image as the database superuser (like the pgstac migrations, after them):
  `python -m <schema module> "" <app role>` creates the service's own schema, owned by the app role, idempotently.
- The worker Deployment runs `python -m <worker module>` from the same image and ConfigMap, exports /metrics on its
  own port, where its probes ask /healthz (the process turns) and /readyz (its job loop reaches the database),
  stages files into a scratch volume, and is scaled by an
  HPA on the External metric eolake_download_queue_depth (served by prometheus-adapter as max over the service's
  pods): desired workers = queue depth / files per worker.
"""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_kubernetes as k8s

from eolake_infra import network, pods
from eolake_infra.config import APP_ROLE
from eolake_infra.database import MIGRATE_LABELS

SCRATCH = "/var/lib/eolake"  # staging area for files being fetched and verified
SCRATCH_SIZE = "20Gi"
FILES_PER_WORKER = "10"


def schema_job(component, opts: pulumi.ResourceOptions) -> k8s.batch.v1.Job:
    ctx, image = component.ctx, component.ctx.image(component.name)
    name = f"{component.name}-schema-" + hashlib.sha256(image.encode()).hexdigest()[:10]
    superuser = f"{ctx.cluster}-superuser"
    env = [
        {"name": "PGHOST", "value": f"{ctx.cluster}-rw"},
        {"name": "PGPORT", "value": "5432"},
        {"name": "PGDATABASE", "value": ctx.platform.database.name},
        {"name": "PGUSER", "value_from": {"secret_key_ref": {"name": superuser, "key": "username"}}},
        {"name": "PGPASSWORD", "value_from": {"secret_key_ref": {"name": superuser, "key": "password"}}},
    ]
    # MIGRATE_LABELS: the migrations' NetworkPolicy (and the database's) already admit these pods.
    return k8s.batch.v1.Job(
        f"{component.name}-schema-job",
        metadata={
            "name": name,
            "namespace": ctx.namespace,
            "labels": MIGRATE_LABELS,
            "annotations": pods.CHECKOV_SKIPS,
        },
        spec={
            "backoff_limit": 6,
            "active_deadline_seconds": 900,
            "template": {
                "metadata": {"labels": MIGRATE_LABELS},
                "spec": {
                    "restart_policy": "OnFailure",
                    "automount_service_account_token": False,
                    "security_context": pods.pod_security(),
                    "containers": [
                        {
                            "name": "schema",
                            "image": image,
                            "image_pull_policy": "IfNotPresent",
                            "env": env,
                            "command": ["/app/.venv/bin/python", "-m", component.manifest.schema, "", APP_ROLE],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"cpu": "1", "memory": "512Mi"},
                            },
                            "security_context": pods.container_security(),
                            "volume_mounts": [pods.TMP_MOUNT],
                        }
                    ],
                    "volumes": [pods.TMP_VOLUME],
                },
            },
        },
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True)),
    )


def worker(component, opts: pulumi.ResourceOptions, monitoring_crds: list[pulumi.Resource]) -> None:
    ctx, name, port = component.ctx, f"{component.name}-worker", component.manifest.worker.metrics_port
    labels = ctx.labels(name)
    meta = {"name": name, "namespace": ctx.namespace, "labels": labels}
    env = [
        *component._env(),
        {"name": component.env_prefix + "WORKER_METRICS_PORT", "value": str(port)},
        {"name": component.env_prefix + "STORAGE_PATH", "value": SCRATCH},
    ]
    container = {
        "name": "worker",
        "image": ctx.image(component.name),
        "image_pull_policy": "IfNotPresent",
        "command": ["/app/.venv/bin/python", "-m", component.manifest.worker.module],
        "ports": [{"name": "metrics", "container_port": port, "protocol": "TCP"}],
        "env_from": [{"config_map_ref": {"name": f"{component.name}-config"}}],
        "env": env,
        "resources": pods.resources(component.spec.resources),
        "security_context": pods.container_security(),
        "volume_mounts": [pods.TMP_MOUNT, {"name": "scratch", "mount_path": SCRATCH}],
        **pods.probes("metrics", component.manifest.worker.liveness, component.manifest.worker.readiness),
    }
    replicas = max(1, component.spec.worker_replicas)
    k8s.apps.v1.Deployment(
        f"{name}-deployment",
        metadata={**meta, "annotations": pods.CHECKOV_SKIPS},
        spec={
            "replicas": replicas,
            "selector": {"match_labels": labels},
            "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
            "template": {
                "metadata": {"labels": {**labels, network.DATABASE_CLIENT: "true"}},
                "spec": {
                    "automount_service_account_token": False,
                    "service_account_name": component.name,
                    "security_context": pods.pod_security(),
                    # A job in progress finishes or is retried elsewhere (procrastinate heartbeats): give it time.
                    "termination_grace_period_seconds": 60,
                    "topology_spread_constraints": pods.spread(labels),
                    "containers": [container],
                    "volumes": [pods.TMP_VOLUME, {"name": "scratch", "empty_dir": {"size_limit": SCRATCH_SIZE}}],
                },
            },
        },
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["spec.replicas"])),
    )
    k8s.policy.v1.PodDisruptionBudget(
        f"{name}-pdb", metadata=meta, spec={"max_unavailable": 1, "selector": {"match_labels": labels}}, opts=opts
    )
    k8s.autoscaling.v2.HorizontalPodAutoscaler(
        f"{name}-hpa",
        metadata=meta,
        spec={
            "scale_target_ref": {"api_version": "apps/v1", "kind": "Deployment", "name": name},
            "min_replicas": replicas,
            "max_replicas": max(replicas, ctx.max_replicas(name)),
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": component.manifest.worker.queue_metric,
                            "selector": {"match_labels": {"service": component.name}},
                        },
                        "target": {"type": "AverageValue", "average_value": FILES_PER_WORKER},
                    },
                },
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "average_utilization": 80}},
                },
            ],
            "behavior": {"scale_down": {"stabilization_window_seconds": 600}},
        },
        opts=opts,
    )
    # The pooler, S3 storage and allow-listed HTTPS sources, the trace collector.
    egress = [network.database(ctx), network.outside(443), *network.fixed_egress(ctx, component.name)]
    k8s.networking.v1.NetworkPolicy(
        f"{name}-netpol",
        metadata=meta,
        spec={
            "pod_selector": {"match_labels": labels},
            "policy_types": ["Ingress", "Egress"],
            "ingress": [{"from": [network.prometheus(ctx.k8s.monitoring_namespace)], "ports": network.tcp(port)}],
            "egress": egress,
        },
        opts=opts,
    )
    k8s.apiextensions.CustomResource(
        f"{name}-podmonitor",
        api_version="monitoring.coreos.com/v1",
        kind="PodMonitor",
        metadata=meta,
        spec={
            "selector": {"matchLabels": labels},
            "namespaceSelector": {"matchNames": [ctx.namespace]},
            "podMetricsEndpoints": [
                {
                    "port": "metrics",
                    "path": "/metrics",
                    "interval": f"{ctx.platform.observability.scrape_interval_seconds}s",
                    "relabelings": [
                        {"targetLabel": "job", "replacement": f"eolake-{name}"},
                        {"targetLabel": "service", "replacement": component.name},
                    ],
                }
            ],
        },
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=monitoring_crds)),
    )
