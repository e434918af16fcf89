"""Wait, within one `pulumi up`, until the new cluster's API server answers /readyz with the administrator's
credentials: the platform layer's provider depends on it, so its first call never meets a server still booting."""

from __future__ import annotations

import base64
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pulumi
import yaml
from pulumi.dynamic import CreateResult, Resource, ResourceProvider

TIMEOUT_SECONDS = 30 * 60  # boot, packages, RKE2 download and the first etcd member
POLL_SECONDS = 10


def ready(kubeconfig: str, timeout: float = TIMEOUT_SECONDS, poll: float = POLL_SECONDS) -> None:
    """Return once GET /readyz answers 200; TimeoutError (with the last answer) when it never does."""
    config = yaml.safe_load(kubeconfig)
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    deadline, last = time.monotonic() + timeout, "no answer yet"
    with tempfile.TemporaryDirectory() as folder:
        context = _tls(cluster, user, Path(folder))
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{cluster['server']}/readyz", context=context, timeout=poll) as answer:
                    if answer.status == 200:
                        return
                    last = f"HTTP {answer.status}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(poll)
    raise TimeoutError(f"the API server at {cluster['server']} was not ready after {timeout:.0f} s: {last}")


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
