"""Wait, within one `pulumi up`, until the new cluster can take the platform: its API server answers /readyz with
the administrator's credentials, the operators' CRDs exist and CloudNativePG's webhook has a ready pod. The platform
layer's provider depends on it, so its first call never meets a server still booting or an unknown kind."""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pulumi
import yaml
from pulumi.dynamic import CreateResult, Resource, ResourceProvider

TIMEOUT_SECONDS = 30 * 60  # boot, packages, RKE2 download, the first etcd member, the add-ons' charts
POLL_SECONDS = 10
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
# Each path answers 200 when ready; with "endpoints", the Endpoints object must also list a ready address.
CONDITIONS = [
    ("/readyz", None),
    (f"{CRDS}/clusters.postgresql.cnpg.io", None),
    (f"{CRDS}/poolers.postgresql.cnpg.io", None),
    (f"{CRDS}/certificates.cert-manager.io", None),
    ("/api/v1/namespaces/cnpg-system/endpoints/cnpg-webhook-service", "endpoints"),
]


def ready(kubeconfig: str, timeout: float = TIMEOUT_SECONDS, poll: float = POLL_SECONDS) -> None:
    """Return once every condition holds; TimeoutError (with the first one that did not) when that never happens."""
    config = yaml.safe_load(kubeconfig)
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    deadline, last = time.monotonic() + timeout, "no answer yet"
    with tempfile.TemporaryDirectory() as folder:
        context = _tls(cluster, user, Path(folder))
        while time.monotonic() < deadline:
            last = next(
                (
                    problem
                    for path, kind in CONDITIONS
                    if (problem := _unmet(cluster["server"] + path, kind, context, poll))
                ),
                None,
            )
            if last is None:
                return
            time.sleep(poll)
    raise TimeoutError(f"the cluster at {cluster['server']} was not ready after {timeout:.0f} s: {last}")


def _unmet(url: str, kind: str | None, context: ssl.SSLContext | None, timeout: float) -> str | None:
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as answer:
            body = answer.read()
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"
    if kind == "endpoints" and not any(s.get("addresses") for s in json.loads(body).get("subsets") or []):
        return f"{url}: no ready pod yet"
    return None


def _tls(cluster: dict, user: dict, folder: Path) -> ssl.SSLContext | None:
    if not cluster["server"].startswith("https:"):
        return None
    context = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    certificate, key = folder / "client.crt", folder / "client.key"
    certificate.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.touch(mode=0o600)
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    context.load_cert_chain(certificate, key)
    return context


class _Waiter(ResourceProvider):
    def create(self, props):
        ready(props["kubeconfig"])
        return CreateResult(id_="ready", outs={})


class ApiReady(Resource):
    def __init__(self, name: str, kubeconfig: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__(_Waiter(), name, {"kubeconfig": pulumi.Output.secret(kubeconfig)}, opts)
