"""Run the real Pulumi program without a cluster (pulumi.runtime.set_mocks) and write what it would create.

One YAML file per resource, `<kind>-<name>.yaml` (Helm releases under helm/, the OpenStack resources of a
provisioned cluster under cluster/), with sorted keys and secret values replaced by a marker: the same stack always
gives the same bytes. What only the cloud computes (addresses, keys) is a recognisable stand-in (COMPUTED).
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import yaml
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from eolake_spec import load_stack

SECRET = "[secret: kept in the Pulumi state, encrypted]"


@dataclass
class Recorded:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    dependencies: list[str]
    state: dict = field(default_factory=dict)
    replace_on_changes: list[str] = field(default_factory=list)
    delete_before_replace: bool = False
    provider: str = ""  # the explicit provider's reference (urn::id); "" for the default one
    retain_on_delete: bool = False
    ignore_changes: list[str] = field(default_factory=list)  # fields Pulumi leaves alone after creation

    @property
    def manifest(self) -> dict | None:
        if not self.custom or not self.type.startswith("kubernetes:") or self.type.startswith("kubernetes:helm"):
            return None
        return self.state


# What the cloud computes, so that the values the cluster layer hands on are visible under mocks: stand-ins, marked
# as such (TEST-NET addresses, PEM-shaped placeholders), never real keys.
COMPUTED = {
    "openstack:networking/port:Port": lambda name: {"allFixedIps": [f"10.20.0.{_octet(name)}"]},
    "openstack:loadbalancer/loadBalancer:LoadBalancer": lambda name: {
        "vipAddress": f"10.20.1.{_octet(name)}",
        "vipPortId": f"{name}-vip-port",
    },
    "openstack:networking/floatingIp:FloatingIp": lambda name: {"address": f"203.0.113.{_octet(name)}"},
    "openstack:identity/ec2CredentialV3:Ec2CredentialV3": lambda name: {
        "access": f"{name}-access",
        "secret": f"{name}-secret",
    },
    "openstack:identity/applicationCredential:ApplicationCredential": lambda name: {"secret": f"{name}-secret"},
    "random:index/randomPassword:RandomPassword": lambda name: {"result": f"{name}-result"},
    "tls:index/privateKey:PrivateKey": lambda name: {"privateKeyPem": _pem("EC PRIVATE KEY", name)},
    "tls:index/selfSignedCert:SelfSignedCert": lambda name: {"certPem": _pem("CERTIFICATE", name)},
    "tls:index/locallySignedCert:LocallySignedCert": lambda name: {"certPem": _pem("CERTIFICATE", name)},
    "tls:index/certRequest:CertRequest": lambda name: {"certRequestPem": _pem("CERTIFICATE REQUEST", name)},
}


def _octet(name: str) -> int:
    return 10 + sum(map(ord, name)) % 240


def _pem(kind: str, name: str) -> str:
    return f"-----BEGIN {kind}-----\n{name}-mock\n-----END {kind}-----\n"


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        computed = COMPUTED.get(args.typ)
        return f"{args.name}-id", {**args.inputs, **(computed(args.name) if computed else {})}

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "openstack:networking/getNetwork:getNetwork":
            return {"id": f"{args.args['name']}-id", "name": args.args["name"]}
        return {}


class _Monitor(mocks.MockMonitor):
    """Also keeps what MockResourceArgs leaves out: parent, depends_on and the replacement options."""

    def __init__(self):
        super().__init__(_Mocks())
        self.recorded: list[Recorded] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            state = clean(self.resources[response.urn].state)
            # as the engine does: outputs the provider declares secret are secret in the state
            state |= {key: _masked(state[key]) for key in request.additionalSecretOutputs if key in state}
            self.recorded.append(
                Recorded(
                    response.urn,
                    request.type,
                    request.name,
                    request.parent,
                    request.custom,
                    sorted(request.dependencies),
                    state,
                    list(request.replaceOnChanges),
                    request.deleteBeforeReplace,
                    request.provider,
                    request.retainOnDelete,
                    list(request.ignoreChanges),
                )
            )
        return response


def run(stack: str | Path, config: dict[str, str] | None = None, monitor: _Monitor | None = None) -> list[Recorded]:
    """Load and check the stack, run the program under mocks, return every resource it registered."""
    from eolake_infra.program import build

    platform = load_stack(stack)
    name = Path(stack).name.removeprefix("Pulumi.").removesuffix(".yaml")
    source = stack if isinstance(stack, Path) else f"stacks/Pulumi.{stack}.yaml"
    return record(name, lambda: build(platform, source=str(source)), config, monitor)


def record(
    stack: str, program, config: dict[str, str] | None = None, monitor: _Monitor | None = None
) -> list[Recorded]:
    """Run `program` (any function declaring resources) under mocks as stack `stack`; every resource it
    registered, by URN."""
    try:  # Pulumi runs on the thread's current loop; an earlier asyncio.run() in this process leaves none
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    settings.reset_options(project="eolake", stack=stack)
    pulumi.runtime.set_all_config(config or {}, secret_keys=list(config or {}))
    monitor = monitor or _Monitor()
    mocks.set_mocks(_Mocks(), project="eolake", stack=stack, preview=False, monitor=monitor)
    _sync_await(run_pulumi_func(program))
    return sorted(monitor.recorded, key=lambda r: r.urn)


def clean(value):
    """Secrets become a marker; whole floats (the wire has only doubles) become ints again."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _masked(value.get("value"))
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _masked(value):
    """A secret map or list keeps its shape (a Secret's stringData stays a map of keys), every value a marker."""
    if isinstance(value, dict) and rpc._special_sig_key not in value:
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return SECRET


def documents(resources: list[Recorded]) -> dict[str, dict]:
    """Relative file name → document."""
    files: dict[str, dict] = {}
    for r in resources:
        if r.manifest is not None:
            meta = r.manifest.get("metadata", {})
            parts = [r.manifest["kind"].lower(), meta.get("namespace"), meta["name"]]
            file = "-".join(p for p in parts if p) + ".yaml"
        elif r.type == "kubernetes:helm.sh/v3:Release":
            file = f"helm/{r.state['name']}.yaml"
        elif r.type.startswith("openstack:") and r.custom:
            file = f"cluster/{r.type.rpartition(':')[2].lower()}-{r.name}.yaml"
        else:
            continue
        if file in files:
            raise ValueError(f"two resources would render to {file}")
        files[file] = r.manifest if r.manifest is not None else r.state
    return dict(sorted(files.items()))


def dump(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=True, default_flow_style=False, width=120, allow_unicode=True)


def user_data(stack: str | Path) -> dict[str, str]:
    """Relative file name → the cloud-init user-data of each kind of node of a provisioned cluster (none for an
    existing one), secrets shown as the marker."""
    from eolake_infra.cluster import user_data_for_review
    from eolake_infra.config import resolve

    ctx = resolve(load_stack(stack), str(stack))
    return {f"cluster/user-data-{kind}.yaml": text for kind, text in user_data_for_review(ctx, SECRET).items()}


def files_of(stack: str | Path) -> dict[str, str]:
    """Relative file name → text: every manifest and resource, and the nodes' user-data."""
    return {**{name: dump(document) for name, document in documents(run(stack)).items()}, **user_data(stack)}


def render(stack: str | Path, out: Path) -> list[Path]:
    """Write the stack's manifests into `out`, replacing what a previous render left there."""
    files = files_of(stack)
    if out.exists():
        for old in [*out.glob("*.yaml"), *out.glob("helm/*.yaml"), *out.glob("cluster/*.yaml")]:
            old.unlink()
        shutil.rmtree(out / "helm", ignore_errors=True)
        shutil.rmtree(out / "cluster", ignore_errors=True)
    written = []
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
