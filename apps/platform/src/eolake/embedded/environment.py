"""What each child of the embedded supervisor is told: its environment (the peers it calls through the gateway,
its secrets, the events broker's URL, where its spans go), its instance name, and the gateway's routes file."""

from __future__ import annotations

import json
import os

from eolake.embedded.broker import Broker
from eolake.embedded.state import StateDir
from eolake_spec import Platform


class StartError(RuntimeError):
    pass


def instance_name(service: str, index: int) -> str:
    return service if index == 1 else f"{service}.{index}"


def otlp_endpoint(platform: Platform, observers: dict[str, str]) -> str | None:
    """Where spans go: the stack's OTLP endpoint, else the embedded trace store (when it runs)."""
    if platform.observability.otlp_endpoint or "traces" not in observers:
        return platform.observability.otlp_endpoint
    return f"{observers['traces']}/v1/traces"


def service_env(
    platform: Platform,
    state: StateDir,
    dsn: str,
    name: str,
    gateway: str,
    release: str,
    observers: dict[str, str] | None = None,
) -> dict:
    """A service's environment. It reaches the services it calls through the gateway (`gateway`: its loopback
    address), which knows their instances; `observers`: where Prometheus, Alertmanager and the trace store run."""
    m = platform.manifest(name)
    prefix = m.env_prefix
    observers = observers or {}
    env = {
        **os.environ,
        **platform.service_env(name, dict.fromkeys(platform.enabled_services, gateway), observers),
        prefix + "AUTH__API_KEYS_FILE": str(state.api_keys),
        prefix + "STORAGE_PATH": str(state.storage),
        "EOLAKE_RELEASE": release,
    }
    if endpoint := otlp_endpoint(platform, observers):
        env[prefix + "OTLP_ENDPOINT"] = endpoint
    if "signing" in m.secrets:
        env[prefix + "TOKEN_KEY"] = state.signing_key()
    if m.database:
        env[prefix + "DATABASE_URL"] = dsn
    if platform.reads_from_replica(name):  # the streaming replica the supervisor started (eolake.embedded.replica)
        env[prefix + "READ_DATABASE_URL"] = replica_dsn(state)
    if m.storage == "write" and (offline := platform.storage.offline_dir(state.storage)):
        env[prefix + "OFFLINE_PATH"] = str(offline)
    if m.storage == "write" and sends_staged_files(platform):
        env[prefix + "PROXY_SENDS_FILES"] = "true"
    if "amqp" in m.secrets:
        env[prefix + "AMQP_URL"] = amqp_url(platform, state)
    return env


def replica_dsn(state: StateDir) -> str:
    from eolake.embedded.replica import StreamingReplica

    return StreamingReplica.app_dsn_in(state.replica)


def amqp_url(platform: Platform, state: StateDir) -> str:
    """The events broker: the embedded one (its port and password in the state directory), or the stack's."""
    events = platform.events
    if events is None or events.broker == "embedded":  # no events section: the events service does not run
        return Broker(state.broker).url()
    url = os.environ.get(events.amqp_url_env)
    if not url:
        raise StartError(f"events.broker is external: set {events.amqp_url_env} to the broker's amqp:// URL")
    return url


def sends_staged_files(platform: Platform) -> bool:
    """The gateway sends staged files itself (it shares local storage with the service that writes there)."""
    return platform.storage.kind == "local" and any(
        platform.manifest(name).storage == "write" for name in platform.enabled_services
    )


def posted_reads(platform: Platform) -> dict[str, list[str]]:
    """By path prefix, the routes whose POST is a read (the manifests' public routes): the gateway retries them."""
    return {
        platform.services[name].path: [r.path for r in platform.manifest(name).public_routes if r.method == "POST"]
        for name in platform.enabled_services
    }


def write_routes(state: StateDir, routes: dict[str, list[str]]) -> None:
    tmp = state.routes_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(routes, sort_keys=True))
    os.replace(tmp, state.routes_file)  # whole or not at all: the gateway reads it any time
