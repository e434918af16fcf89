"""NetworkPolicy peers: who may talk to whom. The namespace denies everything else (see program.py)."""

from __future__ import annotations

INGRESS_CONTROLLER = {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
                      "pod_selector": {"match_labels": {"app.kubernetes.io/name": "ingress-nginx"}}}
DATABASE_CLIENT = "eolake.io/database-client"  # pod label the pooler admits


def prometheus(monitoring_namespace: str) -> dict:
    return {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": monitoring_namespace}},
            "pod_selector": {"match_labels": {"app.kubernetes.io/name": "prometheus"}}}


def pods(labels: dict[str, str]) -> dict:
    return {"pod_selector": {"match_labels": labels}}


def tcp(*ports: int | str) -> list[dict]:
    return [{"protocol": "TCP", "port": p} for p in ports]


# The Kubernetes API and S3 are outside the pod network: allow HTTPS out, and the API server's usual port.
HTTPS_OUT = {"to": [{"ip_block": {"cidr": "0.0.0.0/0"}}], "ports": tcp(443, 6443)}
