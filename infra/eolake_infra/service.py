"""One ComponentResource per service: the same production shape for every eolake service."""

from __future__ import annotations

import hashlib
import json

import pulumi
import pulumi_kubernetes as k8s

from eolake_infra import network, pods, workers
from eolake_infra.config import APP_ROLE, Context

API_KEYS_DIR = "/etc/eolake/api-keys"
DATA_DIR = "/var/lib/eolake"  # a service's own read-only data, prepared by an init container (thesaurus index)


class ServiceComponent(pulumi.ComponentResource):
    """Deployment, Service, ConfigMap, PDB, HPA, NetworkPolicy, ServiceMonitor and ServiceAccount of a service."""

    def __init__(
        self,
        ctx: Context,
        name: str,
        after: list[pulumi.Resource] | None = None,
        opts: pulumi.ResourceOptions | None = None,
        monitoring_crds: list[pulumi.Resource] | None = None,
    ):
        """`after`: what must exist or complete first (the namespace, the migration Job); `monitoring_crds`: what
        installs the ServiceMonitor/PodMonitor CRDs (the monitoring release)."""
        manifest = ctx.manifest(name)
        super().__init__(f"eolake:service:{manifest.title}", name, None, opts)
        self.ctx, self.name, self.manifest = ctx, name, manifest
        self.spec = ctx.services[name]
        self.labels = ctx.labels(name)
        if manifest.schema:  # the service's own tables: created before its pods roll out
            after = [*(after or []), workers.schema_job(self, pulumi.ResourceOptions(parent=self, depends_on=after))]
        child = pulumi.ResourceOptions(parent=self, depends_on=after)
        self.config = self._config_map(child)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=self._meta(name), automount_service_account_token=False, opts=child
        )
        # The HPA owns the replica count once the Deployment exists: `pulumi up` never resets it.
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=self._meta(name, annotations=pods.CHECKOV_SKIPS),
            spec=self._deployment(account),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.config, *(after or [])], ignore_changes=["spec.replicas"]
            ),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=self._meta(name),
            spec={
                "selector": self.labels,
                "ports": [{"name": "http", "port": manifest.port, "target_port": "http"}],
            },
            opts=child,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=self._meta(name),
            spec={"max_unavailable": 1, "selector": {"match_labels": self.labels}},
            opts=child,
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-hpa", metadata=self._meta(name), spec=self._autoscaler(), opts=child
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol", metadata=self._meta(name), spec=self._network_policy(), opts=child
        )
        k8s.apiextensions.CustomResource(
            f"{name}-servicemonitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=self._meta(name),
            spec={
                "selector": {"matchLabels": self.labels},
                "namespaceSelector": {"matchNames": [ctx.namespace]},
                # The same job and service labels as the embedded Prometheus, so the alerts match everywhere.
                "endpoints": [
                    {
                        "port": "http",
                        "path": "/metrics",
                        "interval": f"{ctx.platform.observability.scrape_interval_seconds}s",
                        "relabelings": [
                            {"targetLabel": "job", "replacement": f"eolake-{name}"},
                            {"targetLabel": "service", "replacement": name},
                        ],
                    }
                ],
            },
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=monitoring_crds or [])),
        )
        if manifest.worker:
            workers.worker(
                self,
                pulumi.ResourceOptions(parent=self, depends_on=[self.config, account, *(after or [])]),
                monitoring_crds or [],
            )
        self.register_outputs({})

    def _meta(self, name: str, **extra) -> dict:
        return {"name": name, "namespace": self.ctx.namespace, "labels": self.labels, **extra}

    @property
    def env_prefix(self) -> str:
        return f"EOLAKE_{self.name.upper()}_"

    def config_data(self) -> dict[str, str]:
        """Platform.service_env (the single translation of the spec, peers at their cluster DNS names) plus where
        to listen and, for a service reading the storage through GDAL, GDAL's S3 settings: never a secret."""
        data = dict(self.ctx.platform.service_env(self.name, self.ctx.origins, self.ctx.observers))
        data[self.env_prefix + "HOST"] = "0.0.0.0"
        data[self.env_prefix + "PORT"] = str(self.manifest.port)
        if self.ctx.k8s.secrets.api_keys:
            data[self.env_prefix + "AUTH__API_KEYS_FILE"] = f"{API_KEYS_DIR}/api-keys"
        if self.manifest.prepare:
            data[self.env_prefix + "STORAGE_PATH"] = DATA_DIR
        if self.manifest.gdal:
            data |= self.ctx.platform.storage.gdal_env()
        return dict(sorted(data.items()))

    def _config_map(self, opts: pulumi.ResourceOptions) -> k8s.core.v1.ConfigMap:
        return k8s.core.v1.ConfigMap(
            f"{self.name}-config", metadata=self._meta(f"{self.name}-config"), data=self.config_data(), opts=opts
        )

    def _env(self) -> list[dict]:
        """Secrets come from Secrets, by reference: the database password (the URL is assembled by the kubelet,
        stored nowhere), the signing key, the storage credentials."""
        secrets, env = self.ctx.k8s.secrets, []
        if self.manifest.database:
            db = self.ctx.platform.database
            url = f"postgresql://{APP_ROLE}:$(EOLAKE_DATABASE_PASSWORD)@{self.ctx.pooler}:5432/{db.name}"
            env += [
                _secret("EOLAKE_DATABASE_PASSWORD", secrets.app_database, "password"),
                {"name": self.env_prefix + "DATABASE_URL", "value": url},
            ]
            if self.ctx.platform.reads_from_replica(self.name):  # the replicas, through their own pooler
                read = url.replace(f"@{self.ctx.pooler}:", f"@{self.ctx.read_pooler}:")
                env.append({"name": self.env_prefix + "READ_DATABASE_URL", "value": read})
        if "signing" in self.manifest.secrets:
            env.append(_secret(self.env_prefix + "TOKEN_KEY", secrets.signing, "signing-key"))
        if "storage" in self.manifest.secrets and secrets.storage:
            env += [_secret(key, secrets.storage, key) for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
        if "amqp" in self.manifest.secrets:  # the events broker
            env.append(_secret(self.env_prefix + "AMQP_URL", secrets.amqp, "amqp-url"))
        return env

    def _deployment(self, account: k8s.core.v1.ServiceAccount) -> dict:
        checksum = hashlib.sha256(json.dumps(self.config_data(), sort_keys=True).encode()).hexdigest()
        volumes, mounts = [pods.TMP_VOLUME], [pods.TMP_MOUNT]
        if self.ctx.k8s.secrets.api_keys:
            volumes.append({"name": "api-keys", "secret": {"secret_name": self.ctx.k8s.secrets.api_keys}})
            mounts.append({"name": "api-keys", "mount_path": API_KEYS_DIR, "read_only": True})
        pod_labels = {**self.labels, **({network.DATABASE_CLIENT: "true"} if self.manifest.database else {})}
        container = {
            "name": self.name,
            "image": self.ctx.image(self.name),
            "image_pull_policy": "IfNotPresent",
            "ports": [{"name": "http", "container_port": self.manifest.port, "protocol": "TCP"}],
            "env_from": [{"config_map_ref": {"name": f"{self.name}-config"}}],
            "env": self._env(),
            "resources": pods.resources(self.spec.resources),
            "security_context": pods.container_security(),
            "volume_mounts": mounts,
            **pods.probes("http", self.manifest.liveness, self.manifest.readiness),
        }
        init = []
        if self.manifest.prepare:  # read-only data built at start, into a volume the server mounts read-only
            volumes.append({"name": "data", "empty_dir": {"size_limit": "1Gi"}})
            container["volume_mounts"] = [*mounts, {"name": "data", "mount_path": DATA_DIR, "read_only": True}]
            init.append(
                {
                    **{
                        k: container[k]
                        for k in ("image", "image_pull_policy", "env_from", "env", "resources", "security_context")
                    },
                    "name": "prepare",
                    "command": ["/app/.venv/bin/python", "-m", self.manifest.prepare],
                    "volume_mounts": [*mounts, {"name": "data", "mount_path": DATA_DIR}],
                }
            )
        return {
            "replicas": self.spec.replicas,
            "selector": {"match_labels": self.labels},
            "strategy": {"type": "RollingUpdate", "rolling_update": {"max_unavailable": 0, "max_surge": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {"checksum/config": checksum}},
                "spec": {
                    "service_account_name": self.name,
                    "automount_service_account_token": False,
                    "security_context": pods.pod_security(),
                    "termination_grace_period_seconds": 30,
                    "topology_spread_constraints": pods.spread(self.labels),
                    "init_containers": init,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        }

    def _autoscaler(self) -> dict:
        scaling = self.ctx.k8s.autoscaling.get(self.name)
        cpu, rps = (scaling.cpu_percent, scaling.requests_per_second) if scaling else (70, 20.0)
        return {
            "scale_target_ref": {"api_version": "apps/v1", "kind": "Deployment", "name": self.name},
            "min_replicas": self.spec.replicas,
            "max_replicas": self.ctx.max_replicas(self.name),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "average_utilization": cpu}},
                },
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "eolake_http_requests_per_second"},
                        "target": {"type": "AverageValue", "average_value": _quantity(rps)},
                    },
                },
            ],
            "behavior": {"scale_down": {"stabilization_window_seconds": 300}},
        }

    def _network_policy(self) -> dict:
        return network.service_policy(self.ctx, self.name, self.labels)


def _secret(name: str, secret: str, key: str) -> dict:
    return {"name": name, "value_from": {"secret_key_ref": {"name": secret, "key": key}}}


def _quantity(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{int(value * 1000)}m"
