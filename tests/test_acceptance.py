"""The real embedded platform, started by the CLI as a user starts it: the acceptance suites pass against it,
and the CLI's lifecycle (status, a second up, a port clash, down, restart) behaves."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from servers import RunningPlatform as Platform
from servers import describe

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "acceptance" / "run.py"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_acceptance_suites_pass(platform: Platform):
    output = platform.root / "results"
    result = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--base-url",
            platform.base_url,
            "--outputdir",
            str(output),
            "--admin-key-file",
            str(platform.state / "admin.key"),
            "--user-key-file",
            str(platform.state / "user.key"),
        ],
        env=platform.env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=560,
    )
    failed = [line for line in result.stdout.splitlines() if line.rstrip().endswith("| FAIL |")]
    assert result.returncode == 0, (
        f"{result.returncode} acceptance test(s) failed:\n"
        + "\n".join(failed)
        + f"\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}\n{platform.log_tail()}"
    )
    assert (output / "output.xml").exists()
    # The last statistics line is the whole run's; with both keys and the demo data nothing may be skipped.
    totals = re.findall(r"^(\d+) tests?, (\d+) passed, (\d+) failed(?:, (\d+) skipped)?$", result.stdout, re.M)[-1]
    assert int(totals[0]) >= 40 and totals[0] == totals[1] and totals[2] == "0", result.stdout[-3000:]
    admin_key = (platform.state / "admin.key").read_text().strip()
    for report in output.iterdir():
        assert admin_key not in report.read_text(errors="replace"), f"the admin key leaked into {report.name}"


def test_status_lists_the_catalog_ready(platform: Platform):
    result = platform.cli("status")
    assert result.returncode == 0, describe(result)
    catalog = next(line for line in result.stdout.splitlines() if "catalog" in line)
    assert "ready" in catalog and f"{platform.base_url}/stac/" in catalog, result.stdout
    as_json = platform.cli("status", "--json")
    assert as_json.returncode == 0, describe(as_json)
    components = json.loads(as_json.stdout)["components"]
    assert components["catalog"] == {"state": "ready", "url": f"{platform.base_url}/stac/"}
    assert components["database"]["state"] == "ready"


def test_second_up_says_already_running(platform: Platform):
    result = platform.cli("up", "--port", str(platform.port))
    assert result.returncode == 0, describe(result)
    assert "already running" in result.stdout, describe(result)


def test_up_with_another_state_dir_on_the_same_port_is_refused(platform: Platform):
    other = platform.root / "other-state"
    result = platform.cli("up", "--port", str(platform.port), state=other)
    assert result.returncode == 2, describe(result)
    assert f"port {platform.port} is already in use" in " ".join(result.stderr.split()), describe(result)
    assert not (other / "postgres").exists(), "a refused start must not create a database"
    # The running platform is untouched.
    assert httpx.get(f"{platform.base_url}/stac/readyz", timeout=10).status_code == 200


def test_down_then_restart_keeps_the_data(platform: Platform):
    marker = platform.state / "demo-loaded"
    loaded = marker.read_text()

    down = platform.cli("down", timeout=180)
    assert down.returncode == 0, describe(down)
    assert "stopped" in down.stdout
    status = platform.cli("status")
    assert status.returncode == 3, describe(status)
    assert "not running" in status.stdout
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{platform.base_url}/stac/readyz", timeout=5)

    platform.up()
    with httpx.Client(base_url=f"{platform.base_url}/stac", timeout=60) as client:
        collections = client.get("/collections", params={"limit": 100}).json()["collections"]
        ids = {c["id"] for c in collections}
        assert {"garonne-wse", "garonne-virtual-stations", "naip", "sentinel-2-l2a", "landsat-c2-l2"} <= ids
        naip = client.get("/search", params={"collections": "naip", "limit": 5000, "fields": "id"})
        assert naip.status_code == 200
        assert len(naip.json()["features"]) == 1000
        wse = client.get("/collections/garonne-wse/items", params={"limit": 100}).json()["features"]
        assert len(wse) == 24
    # The demo data was loaded by the first start only.
    assert marker.read_text() == loaded
    log = (platform.state / "logs" / "supervisor.log").read_text(errors="replace")
    assert log.count("demo data loaded") == 1, platform.log_tail()


def test_a_crashed_service_is_restarted(platform: Platform):
    runtime = json.loads((platform.state / "runtime.json").read_text())
    old_pid = runtime["services"]["catalog"]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    new_pid = old_pid
    while time.monotonic() < deadline:
        new_pid = json.loads((platform.state / "runtime.json").read_text())["services"]["catalog"]["pid"]
        try:
            ready = httpx.get(f"{platform.base_url}/stac/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            ready = False
        if new_pid != old_pid and ready:
            break
        time.sleep(0.2)
    assert new_pid != old_pid, f"the catalog was not restarted\n{platform.log_tail()}"
    assert httpx.get(f"{platform.base_url}/stac/collections/naip", timeout=10).status_code == 200
    assert "catalog exited with code -9; restarting" in (platform.state / "logs" / "supervisor.log").read_text()
