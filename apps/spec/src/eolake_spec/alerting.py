"""Alertmanager's configuration for a platform: the project's routes and inhibitions (one file, shared by every
target) with the receivers the stack names, and optionally a local webhook that records every notification."""

from __future__ import annotations

import copy

from eolake_spec.platform import Notifier, Observability

RECEIVERS = ("page", "ticket", "heartbeat")


def _notifier(notifier: Notifier, resolved: bool) -> tuple[str, dict]:
    if notifier.webhook is not None:
        return "webhook_configs", {"url": str(notifier.webhook), "send_resolved": resolved}
    return "email_configs", {"to": notifier.email, "send_resolved": resolved}


def alertmanager_config(routes: dict, observability: Observability, local_webhook: str | None = None) -> dict:
    """`routes` (monitoring/alertmanager/alertmanager.yml, parsed) with its receivers filled from the stack.

    `local_webhook`: every receiver also posts to `<local_webhook>/<receiver>`, so what would have been sent is seen
    on a machine with no integrations (the embedded target's outbox).
    """
    config = copy.deepcopy(routes)
    wanted = observability.receivers
    if wanted.smtp is not None:
        config.setdefault("global", {}).update(
            {"smtp_smarthost": wanted.smtp.smarthost, "smtp_from": wanted.smtp.sender, "smtp_require_tls": True}
        )
    names = {r["name"] for r in config.get("receivers", [])}
    missing = sorted(name for name in RECEIVERS if getattr(wanted, name) and name not in names)
    if missing:
        raise ValueError(f"observability.receivers names {', '.join(missing)}, which the Alertmanager routes lack")
    receivers = []
    for receiver in config["receivers"]:
        name, resolved = receiver["name"], receiver["name"] != "heartbeat"
        filled = copy.deepcopy(receiver)
        for notifier in getattr(wanted, name, []) if name in RECEIVERS else []:
            kind, entry = _notifier(notifier, resolved)
            filled.setdefault(kind, []).append(entry)
        if local_webhook:
            filled.setdefault("webhook_configs", []).append(
                {"url": f"{local_webhook.rstrip('/')}/{name}", "send_resolved": resolved}
            )
        receivers.append(filled)
    config["receivers"] = receivers
    return config
