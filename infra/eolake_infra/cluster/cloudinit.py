"""The cloud-init user-data of a node: Ubuntu 24.04 with unattended security updates, RKE2 at a pinned version whose
tarball is checked against a pinned SHA-256 before anything of it runs, and on the servers the add-ons the platform
layer needs (Cinder CSI, kured, ingress-nginx behind the load balancer's PROXY protocol).

A pure function of plain values, so that the tests render and validate exactly what the servers receive; the Pulumi
program calls it inside an `apply` and keeps the result secret (it holds the join token and, on the first server,
the cluster's CA keys).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from urllib.parse import quote

import yaml

# RKE2 v1.36.4+rke2r1 (Kubernetes 1.36): SHA-256 of rke2.linux-amd64.tar.gz as listed in the release's
# sha256sum-amd64.txt. Bump both together (and check the new sum against that file).
RKE2_VERSION = "v1.36.4+rke2r1"
RKE2_SHA256 = "7bcbd3167d6947e1d79cdf722acdc740b28021fefb50dd5b974a1980776d4079"
RKE2_URL = f"https://github.com/rancher/rke2/releases/download/{quote(RKE2_VERSION)}/rke2.linux-amd64.tar.gz"
CINDER_CSI_CHART = ("openstack-cinder-csi", "2.36.0", "https://kubernetes.github.io/cloud-provider-openstack")
KURED_CHART = ("kured", "5.4.5", "https://kubereboot.github.io/charts")
CNPG_CHART = ("cloudnative-pg", "0.28.2", "https://cloudnative-pg.github.io/charts")  # operator 1.29.1
CERT_MANAGER_CHART = ("cert-manager", "v1.19.3", "https://charts.jetstack.io")
CINDER_CSI_SECRET = "cinder-csi-cloud-config"  # kube-system; the platform layer writes it (cloud.conf)
INSTALLER = "/usr/local/sbin/eolake-install-rke2"
RKE2_CONFIG = "/etc/rancher/rke2/config.yaml"
MANIFESTS = "/var/lib/rancher/rke2/server/manifests"
TLS = "/var/lib/rancher/rke2/server/tls"
SUPERVISOR_PORT, API_PORT = 9345, 6443


@dataclass(frozen=True)
class Node:
    """What differs between nodes: their pool, whether they run the control plane, whether they start the cluster."""

    pool: str  # control-plane, worker, database
    server: bool
    first: bool = False  # initialises etcd; every other node joins through the supervisor's address
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    """The cluster-wide values, known only once OpenStack created the load balancer (plain strings here)."""

    token: str
    supervisor: str  # the API load balancer's private address: joining nodes reach servers' 9345 there
    api_addresses: list[str]  # every address the API server certificate must name
    reboot_days: list[str]
    reboot_start: str
    reboot_end: str
    ca: dict[str, str] = field(default_factory=dict)  # file name under server/tls → PEM (the first server only)
    joined: bool = False  # the cluster exists: the first server joins too (a replaced one never starts a new one)


def user_data(node: Node, settings: Settings) -> str:
    document = {
        "package_update": True,
        "package_upgrade": True,
        "packages": ["unattended-upgrades", "curl", "ca-certificates"],
        "write_files": [
            *_apt_files(),
            _file(RKE2_CONFIG, _dump(rke2_config(node, settings)), "0600"),
            _file(INSTALLER, installer(), "0755"),
            *(_server_files(node, settings) if node.server else []),
        ],
        "runcmd": [[INSTALLER, "server" if node.server else "agent"]],
    }
    return "#cloud-config\n" + _dump(document)


def rke2_config(node: Node, settings: Settings) -> dict:
    config: dict = {"token": settings.token}
    if not (node.first and not settings.joined):
        config["server"] = f"https://{settings.supervisor}:{SUPERVISOR_PORT}"
    if node.server:
        config |= {
            "tls-san": settings.api_addresses,
            "cni": "canal",
            "write-kubeconfig-mode": "0600",
            "etcd-snapshot-schedule-cron": "0 */6 * * *",
            "etcd-snapshot-retention": 28,
        }
    if node.labels:
        config["node-label"] = [f"{k}={v}" for k, v in sorted(node.labels.items())]
    if node.taints:
        config["node-taint"] = node.taints
    return config


def installer() -> str:
    """Download, check the pinned checksum, then unpack and start: a mismatch stops before anything is installed."""
    return "\n".join(
        [
            "#!/bin/sh",
            "set -eu",
            'role="$1"',
            "tarball=$(mktemp)",
            f'curl -fsSL --retry 10 --retry-all-errors -o "$tarball" {shlex.quote(RKE2_URL)}',
            f'echo "{RKE2_SHA256}  $tarball" | sha256sum --check --strict -',
            'tar -xzf "$tarball" -C /usr/local',
            'rm -f "$tarball"',
            "systemctl daemon-reload",
            'systemctl enable --now "rke2-$role.service"',
            "",
        ]
    )


def _apt_files() -> list[dict]:
    """Ubuntu's security updates every day; the reboots they need are left to kured (drain, one node at a time)."""
    return [
        _file(
            "/etc/apt/apt.conf.d/20auto-upgrades",
            'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n',
            "0644",
        ),
        _file("/etc/apt/apt.conf.d/52eolake-reboots", 'Unattended-Upgrade::Automatic-Reboot "false";\n', "0644"),
    ]


def _server_files(node: Node, settings: Settings) -> list[dict]:
    files = [
        _file(f"{MANIFESTS}/eolake-{name}.yaml", _dump(manifest), "0600") for name, manifest in addons(settings).items()
    ]
    if node.first:
        files += [_file(f"{TLS}/{name}", pem, "0600") for name, pem in sorted(settings.ca.items())]
    return files


def addons(settings: Settings) -> dict[str, dict]:
    """RKE2 installs these from its manifests folder (its Helm controller): Cinder's CSI driver with a default
    StorageClass, kured for the reboots, the operators the platform layer needs (CloudNativePG, cert-manager with its
    CRDs), and its bundled ingress-nginx told that the load balancer speaks PROXY."""
    tolerate_all = [{"operator": "Exists"}]
    return {
        "cinder-csi": _helm_chart(
            CINDER_CSI_CHART,
            {
                "secret": {"enabled": True, "create": False, "name": CINDER_CSI_SECRET},
                "storageClass": {
                    "enabled": True,
                    "delete": {"isDefault": True, "allowVolumeExpansion": True},
                    "retain": {"isDefault": False, "allowVolumeExpansion": True},
                },
                "csi": {"plugin": {"nodePlugin": {"tolerations": tolerate_all}}},
            },
        ),
        "kured": _helm_chart(
            KURED_CHART,
            {
                "configuration": {
                    "rebootDays": settings.reboot_days,
                    "startTime": settings.reboot_start,
                    "endTime": settings.reboot_end,
                    "timeZone": "UTC",
                    "concurrency": 1,
                },
                "tolerations": tolerate_all,
            },
        ),
        "cloudnative-pg": _helm_chart(CNPG_CHART, {}, namespace="cnpg-system"),
        "cert-manager": _helm_chart(CERT_MANAGER_CHART, {"crds": {"enabled": True}}, namespace="cert-manager"),
        "ingress-nginx": {
            "apiVersion": "helm.cattle.io/v1",
            "kind": "HelmChartConfig",
            "metadata": {"name": "rke2-ingress-nginx", "namespace": "kube-system"},
            "spec": {"valuesContent": _dump({"controller": {"config": {"use-proxy-protocol": "true"}}})},
        },
    }


def _helm_chart(chart: tuple[str, str, str], values: dict, namespace: str = "kube-system") -> dict:
    name, version, repo = chart
    spec = {
        "chart": name,
        "version": version,
        "repo": repo,
        "targetNamespace": namespace,
        **({"createNamespace": True} if namespace != "kube-system" else {}),
    }
    return {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChart",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {**spec, **({"valuesContent": _dump(values)} if values else {})},
    }


def _file(path: str, content: str, permissions: str) -> dict:
    return {"path": path, "content": content, "owner": "root:root", "permissions": permissions}


class _Dumper(yaml.SafeDumper):
    """Files inside the user-data as literal blocks, readable as they will be written."""


_Dumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None),
)


def _dump(document: dict) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=120)
