"""The operations console's proxy (eolake_web.console) in front of a real Prometheus, Alertmanager and trace store:
admins only (401 anonymous, 403 for a user), GET only, only the API paths the console reads, bounded queries; and
the observers' addresses as each target derives them (embedded, Kubernetes, on-premise)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from eolake_web.app import create_app
from eolake_web.settings import WebSettings

from eolake.embedded import monitoring, processes
from eolake.embedded.monitoring import ALERTMANAGER, PROMETHEUS, plan_monitoring
from eolake.embedded.postgres import free_port
from eolake.embedded.traces import TraceStore, serve
from eolake_kit.auth import create_api_key
from eolake_spec import load_stack
from servers import served, wait_until

PROBLEM = "application/problem+json"
pytestmark = pytest.mark.skipif(
    not (monitoring.find_binary(PROMETHEUS) and monitoring.find_binary(ALERTMANAGER)),
    reason="needs Debian's prometheus and prometheus-alertmanager (the bootstrap installs)",
)


@contextmanager
def binary(name: str, args: list[str], log: Path, ready: str):
    """Run a monitoring binary until the test ends; yields its URL once `ready` answers 200."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [monitoring.find_binary(name), f"--web.listen-address=127.0.0.1:{port}", *args]
    with processes.serving(command, url, log, ready, ready=processes.ok):
        yield url


@pytest.fixture(scope="module")
def observers(tmp_path_factory):
    root = tmp_path_factory.mktemp("observers")
    (root / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(root / "rules.yml")],
                "scrape_configs": [{"job_name": "prometheus", "static_configs": [{"targets": []}]}],
            }
        )
    )
    (root / "rules.yml").write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "console",
                        "rules": [
                            {
                                "alert": "ConsoleTestAlways",
                                "expr": "vector(1)",
                                "labels": {"severity": "ticket"},
                                "annotations": {
                                    "summary": "always firing",
                                    "runbook_url": "https://example.org/runbooks/Always.md",
                                },
                            }
                        ],
                    }
                ]
            }
        )
    )
    (root / "alertmanager.yml").write_text(
        yaml.safe_dump({"route": {"receiver": "none"}, "receivers": [{"name": "none"}]})
    )
    store = TraceStore(max_spans=100)
    traces = serve(free_port(), store)
    threading.Thread(target=traces.serve_forever, daemon=True).start()
    with binary(
        ALERTMANAGER,
        [f"--config.file={root / 'alertmanager.yml'}", f"--storage.path={root / 'am'}", "--cluster.listen-address="],
        root / "alertmanager.log",
        "/-/ready",
    ) as am:
        with binary(
            PROMETHEUS,
            [f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'tsdb'}"],
            root / "prometheus.log",
            "/-/ready",
        ) as prom:
            yield {"prometheus": prom, "alertmanager": am, "traces": f"http://127.0.0.1:{traces.server_address[1]}"}
    traces.shutdown()


@pytest.fixture(scope="module")
def web(observers, tmp_path_factory):
    """The web view with the console's proxy; keys for an admin and a user."""
    keys = tmp_path_factory.mktemp("keys") / "api-keys.json"
    admin, user = create_api_key(keys, "sre", "admin"), create_api_key(keys, "reader", "user")
    settings = WebSettings(observers=observers, auth={"api_keys_file": keys})
    with served(create_app(settings)) as url:
        yield {"url": url, "admin": {"X-API-Key": admin}, "user": {"X-API-Key": user}}


def get(web, path: str, who: str | None = "admin", **params) -> httpx.Response:
    headers = web[who] if who else {}
    return httpx.get(f"{web['url']}/console/api/{path}", params=params, headers=headers, timeout=20)


def assert_problem(response: httpx.Response, status: int, detail: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert detail in response.json()["detail"]


def test_an_admin_reads_prometheus_instant_and_range_queries(web):
    now = time.time()
    instant = get(web, "prometheus/api/v1/query", query="vector(42)")
    assert instant.status_code == 200 and instant.headers["cache-control"] == "private, no-store"
    assert instant.json()["data"]["result"][0]["value"][1] == "42"
    ranged = get(web, "prometheus/api/v1/query_range", query="vector(7)", start=now - 3600, end=now, step=60)
    assert ranged.status_code == 200
    values = ranged.json()["data"]["result"][0]["values"]
    assert len(values) == 61 and {v for _, v in values} == {"7"}


def test_alerts_rules_and_silences_pass_through(web, observers):
    assert wait_until(lambda: get(web, "prometheus/api/v1/alerts").json()["data"]["alerts"], timeout=30)
    alert = get(web, "prometheus/api/v1/alerts").json()["data"]["alerts"][0]
    assert alert["labels"]["alertname"] == "ConsoleTestAlways"
    assert alert["annotations"]["runbook_url"] == "https://example.org/runbooks/Always.md"
    rules = get(web, "prometheus/api/v1/rules", type="alert").json()["data"]["groups"]
    assert [g["name"] for g in rules] == ["console"]
    silence = {
        "matchers": [{"name": "alertname", "value": "Nothing", "isRegex": False}],
        "createdBy": "tests",
        "comment": "a silence",
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
    }
    assert httpx.post(f"{observers['alertmanager']}/api/v2/silences", json=silence, timeout=5).status_code == 200
    silences = get(web, "alertmanager/api/v2/silences").json()
    assert [s["comment"] for s in silences] == ["a silence"]
    assert get(web, "alertmanager/api/v2/alerts", silenced="true").status_code == 200


def test_trace_store_listing_and_unknown_trace(web):
    assert get(web, "traces", limit=5).json()["traces"] == []
    assert_problem(get(web, f"traces/{'a' * 32}"), 404, "no trace")
    assert_problem(get(web, "traces/NOT-A-TRACE"), 400, "32 lowercase hexadecimal")
    assert_problem(get(web, "traces", limit=1000), 400, "limit")


@pytest.mark.parametrize("path", ["prometheus/api/v1/query?query=up", "alertmanager/api/v2/silences", "traces"])
def test_anonymous_is_401_and_a_user_is_403(web, path):
    anonymous = httpx.get(f"{web['url']}/console/api/{path}", timeout=5)
    assert_problem(anonymous, 401, "authentication required")
    user = httpx.get(f"{web['url']}/console/api/{path}", headers=web["user"], timeout=5)
    assert_problem(user, 403, "admin")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_only_get_is_forwarded(web, observers, method):
    for path in ("prometheus/api/v1/query", "alertmanager/api/v2/silences", "prometheus/api/v1/admin/tsdb/snapshot"):
        answer = httpx.request(
            method,
            f"{web['url']}/console/api/{path}",
            headers=web["admin"],
            timeout=5,
            **({"json": {"x": 1}} if method != "DELETE" else {}),
        )
        assert answer.status_code == 405 and answer.headers["content-type"].startswith(PROBLEM), (method, path)


@pytest.mark.parametrize(
    "path",
    [
        "prometheus/api/v1/admin/tsdb/snapshot",
        "prometheus/api/v1/series",
        "prometheus/federate",
        "prometheus/-/quit",
        "prometheus/api/v1/status/config",
        "alertmanager/api/v2/status",
        "alertmanager/api/v2/silence/x",
        "prometheus/api/v1/../../-/quit",
        "elsewhere/api/v1/query",
    ],
)
def test_unknown_api_paths_are_refused(web, path):
    answer = get(web, path)
    assert answer.status_code == 404 and answer.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({}, "a PromQL expression is required"),
        ({"query": "x" * 2001}, "longer than 2000"),
        ({"query": "rate(up[32d])"}, "further than 31 days"),
        ({"query": "max_over_time(up[1y:1h])"}, "further than 31 days"),
        ({"query": "up[abc]"}, "not a duration"),
        ({"query": "up", "dedup": "true"}, "unexpected parameters"),
        ({"query": "up", "time": "yesterday"}, "RFC 3339"),
        ({"query": "sum("}, "Prometheus: "),  # Prometheus's own parse error, as a 400
    ],
)
def test_instant_queries_are_bounded(web, params, detail):
    assert_problem(get(web, "prometheus/api/v1/query", **params), 400, detail)


def test_range_queries_are_bounded(web):
    now = time.time()
    day = 24 * 3600
    for params, detail in [
        ({"query": "up", "start": now - 60, "end": now}, "needs step"),
        ({"query": "up", "start": now - day - 60, "end": now, "step": 3600}, "longer than 24 hours"),
        ({"query": "up", "start": now - 3600, "end": now, "step": 1}, "at most 1100 points"),
        ({"query": "up", "start": now, "end": now - 60, "step": 15}, "end is before start"),
        ({"query": "up", "start": now - 60, "end": now, "step": "often"}, "not seconds or a duration"),
    ]:
        assert_problem(get(web, "prometheus/api/v1/query_range", **params), 400, detail)
    assert get(web, "prometheus/api/v1/query_range", query="up", start=now - day, end=now, step="2m").status_code == 200


def test_an_observer_the_target_did_not_deploy_is_503(tmp_path):
    keys = tmp_path / "api-keys.json"
    admin = create_api_key(keys, "sre", "admin")
    with served(create_app(WebSettings(auth={"api_keys_file": keys}))) as url:
        answer = httpx.get(
            f"{url}/console/api/prometheus/api/v1/query",
            params={"query": "up"},
            headers={"X-API-Key": admin},
            timeout=5,
        )
        assert_problem(answer, 503, "not deployed")
        assert httpx.get(f"{url}/config.json", timeout=5).json()["observers"] == []


def test_an_observer_that_does_not_answer_is_502(tmp_path):
    keys = tmp_path / "api-keys.json"
    admin = create_api_key(keys, "sre", "admin")
    settings = WebSettings(auth={"api_keys_file": keys}, observers={"prometheus": f"http://127.0.0.1:{free_port()}"})
    with served(create_app(settings)) as url:
        answer = httpx.get(
            f"{url}/console/api/prometheus/api/v1/query",
            params={"query": "up"},
            headers={"X-API-Key": admin},
            timeout=5,
        )
        assert_problem(answer, 502, "cannot be reached")


@pytest.mark.parametrize(
    "observers",
    [
        {"grafana": "http://127.0.0.1:3000"},
        {"prometheus": "file:///etc/passwd"},
        {"prometheus": "http://user:pw@127.0.0.1:9090"},
        {"prometheus": "http://127.0.0.1:9090/?x=1"},
    ],
)
def test_observer_settings_are_checked(observers):
    with pytest.raises(ValueError, match="observers"):
        WebSettings(observers=observers)


# ------------------------------------------------------------------------------------------------ the targets


def test_every_target_tells_the_web_view_where_its_observers_are():
    import json

    from infra_program import program

    from eolake.onprem import units

    embedded = load_stack("local")
    env = embedded.service_env("web", observers={"prometheus": "http://127.0.0.1:9090"})
    assert json.loads(env["EOLAKE_WEB_OBSERVERS"]) == {"prometheus": "http://127.0.0.1:9090"}
    assert "EOLAKE_CATALOG_OBSERVERS" not in embedded.service_env("catalog", observers={"prometheus": "x"})

    ctx = program("prod").context
    assert ctx.observers == {
        "prometheus": f"http://kube-prometheus-stack-prometheus.{ctx.k8s.monitoring_namespace}.svc:9090",
        "alertmanager": f"http://kube-prometheus-stack-alertmanager.{ctx.k8s.monitoring_namespace}.svc:9093",
    }
    assert WebSettings(observers=ctx.observers).observers == ctx.observers

    onprem = load_stack("onprem")
    web = next(u for u in units(onprem, onprem.onprem.app[0]) if u["name"] == "web")
    observers = json.loads(web["environment"]["EOLAKE_WEB_OBSERVERS"])
    if onprem.onprem.monitoring:
        assert observers["prometheus"] == f"http://{onprem.onprem.monitoring.address}:9090"


def test_the_web_view_may_reach_prometheus_and_alertmanager_on_kubernetes():
    import netpol
    from infra_program import program
    from test_infra_flows import manifests, outside

    alertmanager = netpol.external(
        "alertmanager", "monitoring", {"app.kubernetes.io/name": "alertmanager"}, {"web": ("TCP", 9093)}
    )
    found = netpol.flows(manifests("prod"), extra=(*outside("prod"), alertmanager))
    reached = {(dst, port) for src, dst, _, port in found if src == "web"}
    assert ("prometheus", 9090) in reached and ("alertmanager", 9093) in reached
    services = set(program("prod").context.services)
    assert {src for src, dst, _, _ in found if dst in ("alertmanager", "prometheus") and src in services} == {"web"}


def test_the_embedded_plan_names_the_observers_it_runs():
    plan = plan_monitoring(load_stack("local"))
    observers = plan.observers()
    assert observers["prometheus"] == f"http://{plan.prometheus}"
    assert ("alertmanager" in observers) == bool(plan.alertmanager)
