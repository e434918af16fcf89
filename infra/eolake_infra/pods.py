"""Pod building blocks shared by Deployments and Jobs: the Restricted security profile, probes, temp volume."""

from __future__ import annotations

from eolake_infra.config import RUN_AS

TMP_VOLUME = {"name": "tmp", "empty_dir": {"size_limit": "256Mi"}}
TMP_MOUNT = {"name": "tmp", "mount_path": "/tmp"}


def pod_security() -> dict:
    return {
        "run_as_non_root": True,
        "run_as_user": RUN_AS,
        "run_as_group": RUN_AS,
        "fs_group": RUN_AS,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def container_security() -> dict:
    """Pod Security Standard `restricted`, plus a read-only root filesystem (only /tmp is writable)."""
    return {
        "run_as_non_root": True,
        "run_as_user": RUN_AS,
        "run_as_group": RUN_AS,
        "allow_privilege_escalation": False,
        "read_only_root_filesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def probes(port: str = "http", liveness: str = "/healthz", readiness: str = "/readyz") -> dict:
    """Liveness never touches a dependency; readiness does; startup covers slow starts (the manifest's paths)."""

    def get(path: str, **timing) -> dict:
        return {"http_get": {"path": path, "port": port}, "timeout_seconds": 3, **timing}

    return {
        "startup_probe": get(liveness, period_seconds=2, failure_threshold=60),
        "readiness_probe": get(readiness, period_seconds=10, failure_threshold=3),
        "liveness_probe": get(liveness, period_seconds=10, failure_threshold=3),
    }


def resources(spec) -> dict:
    return {
        "requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
        "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit},
    }


def spread(labels: dict[str, str]) -> list[dict]:
    """Across nodes (hard) and zones (soft: clusters without zones still schedule)."""
    return [
        {"max_skew": 1, "topology_key": key, "when_unsatisfiable": mode, "label_selector": {"match_labels": labels}}
        for key, mode in (
            ("kubernetes.io/hostname", "DoNotSchedule"),
            ("topology.kubernetes.io/zone", "ScheduleAnyway"),
        )
    ]


# checkov findings we accept, with the reason; put on Deployments and Jobs (checkov reads the annotations).
CHECKOV_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_43=images are pinned to immutable version tags (the spec refuses latest); "
    "digests are not known when the stack is written",
    "checkov.io/skip2": "CKV_K8S_35=services read settings from EOLAKE_* variables; the password comes from a "
    "secretKeyRef, never from the pod spec or a ConfigMap",
    "checkov.io/skip3": "CKV_K8S_15=tags are immutable, so IfNotPresent; Always would make every pod start "
    "depend on the registry",
}
