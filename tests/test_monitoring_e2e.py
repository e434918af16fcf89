"""Monitoring proven against real metrics: `eolake up` starts Prometheus (and Alertmanager, the PostgreSQL exporter)
with the repository's rules; after a little traffic through the gateway, including client errors, every dashboard
panel query and every recording rule returns data, and a paused service makes its EolakeServiceDown alert pending.

Queries that cannot have data on the embedded platform are left out, as monitoring/dashboards/generate.py declares
them (not_local_reason: metrics only the Kubernetes target exports, services the local stack does not run).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest
import yaml
from test_dashboards import expand, load_generator

from servers import SCRAPE_INTERVAL, RunningPlatform

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "monitoring"
DOWN_ALERT = "EolakeServiceDown"
# Used only while monitoring/alerts does not define the alert yet (the test says so when it uses it).
FALLBACK_DOWN_RULE = {
    "groups": [
        {
            "name": "e2e-fallback",
            "rules": [
                {
                    "alert": DOWN_ALERT,
                    "expr": 'up{job=~"eolake-.*"} == 0',
                    "for": "2m",
                    "labels": {"severity": "page"},
                    "annotations": {"summary": "{{ $labels.job }} is down"},
                }
            ],
        }
    ]
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),  # the first test boots the platform's stack
    pytest.mark.skipif(
        not (shutil.which("prometheus") or Path("/usr/bin/prometheus").exists()),
        reason="Prometheus (Debian package prometheus) is not installed",
    ),
    pytest.mark.parametrize("platform", ["fast-monitoring"], indirect=True),
]


@pytest.fixture(scope="module")
def running(platform: RunningPlatform) -> RunningPlatform:
    """The shared platform on the fast-monitoring stack (tests/servers.py)."""
    assert f"prometheus {prometheus_of(platform)}/" in " ".join(platform.started.split()), platform.started
    return platform


def prometheus_of(running: RunningPlatform) -> str:
    return running.runtime()["monitoring"]["prometheus"]["url"]


def promql(prometheus: str, expr: str) -> list[dict]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", f"{expr}: {answer}"
    return answer["data"]["result"]


def has_data(result: list[dict]) -> bool:
    """At least one series with a number (a histogram quantile of no requests is NaN: that is no data)."""
    return any(not math.isnan(float(series["value"][1])) for series in result)


def wait_for(what: str, check, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if outcome or time.monotonic() > deadline:
            assert outcome, f"{what}: not within {timeout:.0f} s"
            return outcome
        time.sleep(interval)


def generate_traffic(base_url: str) -> dict[str, int]:
    """Successes, not-founds and bad requests through the gateway; returns the status codes seen."""
    seen: dict[str, int] = {}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        requests = [
            ("GET", "/stac/", None),
            ("GET", "/stac/collections", None),
            ("GET", "/stac/collections/naip", None),
            ("GET", "/stac/collections/naip/items?limit=2", None),
            ("GET", "/stac/search?collections=naip&limit=5", None),
            ("POST", "/stac/search", {"collections": ["naip"], "limit": 3}),
            ("GET", "/stac/collections/no-such-collection", None),  # 404 from the catalog
            ("GET", "/no-such-service/", None),  # 404 from the gateway
            ("GET", "/stac/search?limit=-1", None),  # 400
            ("GET", "/stac/search?bbox=1,2,3", None),  # 400
            ("GET", "/tiles/collections/garonne-wse/WebMercatorQuad/tilejson.json?assets=wse", None),
            (
                "GET",
                "/tiles/collections/garonne-wse/items/garonne-wse-2023-01-01/tiles/WebMercatorQuad/12/2063/1495.png"
                "?assets=wse&rescale=125,150",
                None,
            ),
            ("GET", "/tiles/collections/garonne-wse/items/no-such-item/info", None),  # 404
            ("GET", "/tiles/colorMaps/no-such-colormap", None),  # 4xx
            ("GET", "/timeseries/collections/stations/items", None),
            ("GET", "/timeseries/collections/stations/locations/GARONNE_KM0328", None),
            ("GET", "/timeseries/collections/stations/items/NO_SUCH_STATION", None),  # 404
            ("GET", "/timeseries/collections/stations/items?bbox=1,2,3", None),  # 400
            ("GET", "/", None),
            ("GET", "/config.json", None),  # the web view (the gateway's catch-all)
            ("GET", "/thesaurus/rest/v1/vocabularies", None),
            ("GET", "/thesaurus/autocomplete?q=flo", None),
            ("GET", "/thesaurus/rest/v1/nope/topConcepts", None),  # 404
            ("GET", "/search/search?limit=2", None),
            ("POST", "/search/search", {"limit": 2, "q": ["inondation"]}),
            ("GET", "/search/search?providers=nope", None),  # 400
            ("GET", "/events/", None),
            ("GET", "/events/no-such-route", None),  # the exchange's description; 404
        ]
        for _ in range(3):
            for method, path, body in requests:
                status = client.request(method, path, json=body).status_code
                seen[f"{status // 100}xx"] = seen.get(f"{status // 100}xx", 0) + 1
            # A malformed body: 400
            status = client.post("/stac/search", content=b"{not json", headers={"content-type": "application/json"})
            seen[f"{status.status_code // 100}xx"] = seen.get(f"{status.status_code // 100}xx", 0) + 1
    return seen


def download_traffic(running: RunningPlatform) -> None:
    """One order of a demo file, staged by the worker and downloaded: the download queue's metrics."""
    key = (running.state / "user.key").read_text().strip()
    with httpx.Client(base_url=running.base_url, timeout=30, headers={"X-API-Key": key}) as client:
        order = client.post(
            "/downloads/orders",
            json={"items": [{"collection": "garonne-wse", "id": "garonne-wse-2023-01-01", "assets": ["wse"]}]},
        )
        assert order.status_code == 201, order.text
        url = f"/downloads/orders/{order.json()['id']}"
        done = wait_for("the order staged", lambda: (o := client.get(url).json())["status"] == "succeeded" and o, 60)
        assert client.get(done["files"][0]["href"]).status_code == 200


def recording_rules() -> list[dict]:
    rules = []
    for path in sorted((MONITORING / "rules").glob("*.y*ml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            rules += [{**rule, "file": path.name} for rule in group.get("rules", []) if "record" in rule]
    return rules


def selector(rule: dict) -> str:
    labels = ",".join(f'{k}="{v}"' for k, v in sorted((rule.get("labels") or {}).items()))
    return f"{rule['record']}{{{labels}}}"


def test_prometheus_scrapes_every_target_with_the_rules(running: RunningPlatform):
    prometheus = prometheus_of(running)
    status = running.cli("status")
    assert "prometheus" in status.stdout and status.returncode == 0, status.stdout + status.stderr

    def all_up():
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        return targets if targets and all(t["health"] == "up" for t in targets) else None

    targets = wait_for("every target up", all_up, 30)
    jobs = {t["labels"]["job"] for t in targets}
    assert {"eolake-catalog", "eolake-gateway", "postgres", "prometheus"} <= jobs, jobs
    if running.runtime()["monitoring"].get("alertmanager", {}).get("url"):
        assert "alertmanager" in jobs
    catalog = next(t for t in targets if t["labels"]["job"] == "eolake-catalog")
    assert catalog["labels"]["service"] == "catalog"

    loaded = {
        Path(g["file"]).name for g in httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    }
    on_disk = {p.name for folder in ("rules", "alerts") for p in (MONITORING / folder).glob("*.y*ml")}
    assert loaded == on_disk - {"kubernetes.yaml", "kubernetes.yml"}, (loaded, on_disk)


def test_every_panel_query_and_recording_rule_returns_data(running: RunningPlatform):
    generator = load_generator()
    prometheus = prometheus_of(running)
    # Two rounds of traffic, each waited for in Prometheus: a series first appears with its count already
    # counted, so a rate needs a second round after the first has been scraped to see an increase.
    searches = 'sum(eolake_http_requests_total{service="catalog",route="/search"})'
    for round_ in (1, 2):
        seen = generate_traffic(running.base_url)
        assert seen.get("2xx") and seen.get("4xx"), seen
        download_traffic(running)
        scraped = f"{searches} >= {9 * round_}"
        wait_for(
            f"round {round_} of the catalog's /search requests scraped",
            lambda expr=scraped: promql(prometheus, expr),
            30,
        )
        time.sleep(2 * SCRAPE_INTERVAL)

    queries, not_local = [], []
    for name, dashboard in sorted(generator.build_all().items()):
        for title, expr in generator.panel_queries(dashboard):
            (not_local if generator.not_local_reason(expr) else queries).append((f"{name}: {title}", expand(expr)))
    rules = recording_rules()
    checked_rules = [r for r in rules if not generator.not_local_reason(f"{r['expr']} {selector(r)}")]
    assert len(queries) > 40, "the dashboards lost their queries"

    def missing():
        empty = [f"{where}: {expr}" for where, expr in queries if not has_data(promql(prometheus, expr))]
        empty += [
            f"rule {r['file']}: {selector(r)}" for r in checked_rules if not has_data(promql(prometheus, selector(r)))
        ]
        return empty

    deadline = time.monotonic() + 20
    while (empty := missing()) and time.monotonic() < deadline:
        time.sleep(1)
    assert not empty, f"{len(empty)} queries without data:\n" + "\n".join(empty)
    print(
        f"{len(queries)} panel queries and {len(checked_rules)} of {len(rules)} recording rules return data; "
        f"{len(not_local)} panel queries without local data skipped"
    )


def test_a_stopped_service_makes_its_down_alert_pending(running: RunningPlatform):
    prometheus = prometheus_of(running)
    defined = any(
        rule.get("alert") == DOWN_ALERT
        for path in (MONITORING / "alerts").glob("*.y*ml")
        if path.name not in ("kubernetes.yaml",)
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", [])
        for rule in group.get("rules", [])
    )
    if not defined:
        # monitoring/alerts does not define it yet: add a stand-in to this Prometheus only, and say so.
        print(f"NOTE: {DOWN_ALERT} is not in monitoring/alerts yet; using a stand-in rule")
        extra = running.state / "prometheus" / "e2e-down.yaml"
        extra.write_text(yaml.safe_dump(FALLBACK_DOWN_RULE))
        config_file = running.state / "prometheus" / "prometheus.yml"
        config = yaml.safe_load(config_file.read_text())
        config["rule_files"].append(str(extra))
        config_file.write_text(yaml.safe_dump(config))
        os.kill(running.runtime()["services"]["prometheus"]["pid"], signal.SIGHUP)  # no lifecycle API: a signal

    pid = running.runtime()["services"]["catalog"]["pid"]
    # Paused, not killed: the supervisor restarts a service that exits, but a paused one only stops answering.
    os.kill(pid, signal.SIGSTOP)
    try:

        def pending():
            alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            return [
                a
                for a in alerts
                if a["labels"].get("alertname") == DOWN_ALERT
                and a["labels"].get("job") == "eolake-catalog"
                and a["state"] in ("pending", "firing")
            ]

        alert = wait_for(f"{DOWN_ALERT} pending for the paused catalog", pending, 30)[0]
        assert alert["state"] == "pending", alert  # `for: 2m` has not elapsed
        others = [
            a
            for a in httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            if a["labels"].get("alertname") == DOWN_ALERT and a["labels"].get("job") != "eolake-catalog"
        ]
        assert not others, f"only the catalog is down: {others}"
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for("the catalog's target up again", lambda: promql(prometheus, 'up{job="eolake-catalog"} == 1'), 30)


def test_watchdog_reaches_alertmanager(running: RunningPlatform):
    alertmanager = running.runtime()["monitoring"].get("alertmanager", {}).get("url")
    if not alertmanager:
        pytest.skip(f"Alertmanager not running: {running.runtime()['monitoring'].get('alertmanager')}")

    def watchdog():
        alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=10).json()
        return [a for a in alerts if a["labels"].get("alertname") == "Watchdog"]

    wait_for("Watchdog received by Alertmanager", watchdog, 30)

    def sent_to_the_heartbeat():
        listed = running.cli("alerts", "--json", "--last", "50")
        assert listed.returncode == 0, listed.stderr
        return [
            n
            for n in json.loads(listed.stdout)
            if n["receiver"] == "heartbeat" and any(a["alertname"] == "Watchdog" for a in n["alerts"])
        ]

    wait_for("Watchdog notification in the local outbox (`eolake alerts`)", sent_to_the_heartbeat, 30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"


def test_down_stops_monitoring_and_a_restart_keeps_the_history(running: RunningPlatform):
    """Runs last: it restarts the platform. Prometheus' TSDB is in the state directory and survives `down`."""
    before = running.runtime()
    monitoring_pids = [
        s["pid"]
        for name, s in before["services"].items()
        if name in ("prometheus", "alertmanager", "postgres-exporter")
    ]
    assert "prometheus" in before["services"] and all(monitoring_pids)
    scraped_at = time.time() - 2
    assert promql(prometheus_of(running), 'up{job="eolake-catalog"}')

    down = running.cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [pid for pid in monitoring_pids if _alive(pid)], "monitoring processes outlived `eolake down`"

    running.up()
    history = httpx.get(
        f"{prometheus_of(running)}/api/v1/query",
        timeout=10,
        params={"query": 'up{job="eolake-catalog"}', "time": f"{scraped_at:.3f}"},
    ).json()
    assert history["data"]["result"], f"the samples from before the restart are gone: {history}"


def test_prometheus_lifecycle_api_is_off(running: RunningPlatform):
    """No HTTP caller (a service tricked into a request included) can stop or reload Prometheus."""
    for action in ("quit", "reload"):
        answer = httpx.post(f"{prometheus_of(running)}/-/{action}", timeout=10)
        assert answer.status_code == 403 and "not enabled" in answer.text.lower(), answer.text
    assert httpx.get(f"{prometheus_of(running)}/-/ready", timeout=10).status_code == 200
