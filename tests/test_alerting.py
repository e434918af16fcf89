"""Alertmanager receivers from the stack (eolake_spec.alerting) and the embedded outbox that records what was sent."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import ValidationError

from eolake.embedded import processes
from eolake.embedded.outbox import KEEP, read
from eolake_spec.alerting import alertmanager_config
from eolake_spec.platform import Observability
from servers import free_port

ROUTES = yaml.safe_load((Path(__file__).resolve().parents[1] / "monitoring/alertmanager/alertmanager.yml").read_text())


def observability(**receivers) -> Observability:
    return Observability.model_validate({"receivers": receivers})


def receiver(config: dict, name: str) -> dict:
    return next(r for r in config["receivers"] if r["name"] == name)


def test_no_receivers_configured_sends_nothing():
    assert alertmanager_config(ROUTES, Observability()) == ROUTES


def test_webhooks_and_email_fill_the_named_receivers_and_the_heartbeat_never_resolves():
    config = alertmanager_config(
        ROUTES,
        observability(
            page=[{"webhook": "https://pager.example.org/x"}, {"email": "oncall@example.org"}],
            heartbeat=[{"webhook": "https://hb.example.org/ping"}],
            smtp={"smarthost": "mail.example.org:587", "sender": "eolake@example.org"},
        ),
    )
    page = receiver(config, "page")
    assert page["webhook_configs"] == [{"url": "https://pager.example.org/x", "send_resolved": True}]
    assert page["email_configs"] == [{"to": "oncall@example.org", "send_resolved": True}]
    assert receiver(config, "heartbeat")["webhook_configs"][0]["send_resolved"] is False
    assert receiver(config, "ticket") == {"name": "ticket"}
    assert config["global"]["smtp_smarthost"] == "mail.example.org:587"
    assert config["route"] == ROUTES["route"] and config["inhibit_rules"] == ROUTES["inhibit_rules"]


def test_the_local_webhook_is_added_to_every_receiver():
    config = alertmanager_config(ROUTES, Observability(), local_webhook="http://127.0.0.1:9/")
    for name in ("page", "ticket", "heartbeat"):
        assert receiver(config, name)["webhook_configs"][-1]["url"] == f"http://127.0.0.1:9/{name}"


@pytest.mark.skipif(not shutil.which("amtool"), reason="amtool (Debian package prometheus-alertmanager) missing")
def test_generated_configuration_passes_amtool(tmp_path):
    config = alertmanager_config(
        ROUTES,
        observability(
            page=[{"webhook": "https://pager.example.org/x"}],
            ticket=[{"email": "team@example.org"}],
            smtp={"smarthost": "mail.example.org:587", "sender": "eolake@example.org"},
        ),
        local_webhook="http://127.0.0.1:9",
    )
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    check = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(
    "receivers, message",
    [
        ({"page": [{"email": "a@example.org"}]}, "needs receivers.smtp"),
        ({"page": [{"webhook": "https://x.example.org", "email": "a@example.org"}]}, "either"),
        ({"page": [{}]}, "either"),
        ({"page": [{"webhook": "not a url"}]}, "URL"),
        ({"pager": []}, "Extra inputs"),
    ],
)
def test_bad_receivers_are_refused(receivers, message):
    with pytest.raises(ValidationError, match=message):
        observability(**receivers)


def test_receivers_the_routes_lack_are_an_error():
    routes = {"route": {"receiver": "x"}, "receivers": [{"name": "x"}]}
    with pytest.raises(ValueError, match="lack"):
        alertmanager_config(routes, observability(page=[{"webhook": "https://x.example.org"}]))


@pytest.fixture
def outbox(tmp_path):
    port, path = free_port(), tmp_path / "outbox.jsonl"
    command = [sys.executable, "-m", "eolake.embedded.outbox", f"--port={port}", f"--file={path}"]
    url = f"http://127.0.0.1:{port}"
    with processes.serving(command, url, tmp_path / "outbox.log", timeout=20, ready=processes.ok) as proc:
        yield url, path
    assert proc.returncode == 0, "the outbox did not end cleanly on SIGTERM"


def notification(i: int) -> dict:
    return {
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": f"A{i}", "severity": "page", "service": "tiles"},
                "annotations": {"summary": "s"},
            }
        ],
    }


def test_the_outbox_records_notifications_and_refuses_bad_bodies(outbox):
    url, path = outbox
    assert httpx.post(f"{url}/page", json=notification(1)).status_code == 200
    for body in (b"[]", b"null", b"{", b"\xff"):
        assert httpx.post(f"{url}/page", content=body).status_code == 400
    assert httpx.post(f"{url}/not-a-receiver", json=notification(2)).status_code == 400
    assert httpx.post(f"{url}/page", content=b"x" * (2 << 20)).status_code == 400
    [entry] = read(path)
    alert = entry["alerts"][0]
    assert (entry["receiver"], alert["alertname"], alert["service"]) == ("page", "A1", "tiles")


def test_the_outbox_keeps_the_newest(outbox, tmp_path):
    url, path = outbox
    path.write_text("".join(json.dumps({"receiver": "old", "n": i}) + "\n" for i in range(KEEP)))
    assert httpx.post(f"{url}/ticket", json=notification(7)).status_code == 200
    lines = path.read_text().splitlines()
    assert len(lines) == KEEP and json.loads(lines[0])["n"] == 1 and json.loads(lines[-1])["receiver"] == "ticket"
