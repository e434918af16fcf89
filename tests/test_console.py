"""The operations console end to end, on the embedded platform (`eolake up`) and the system's headless Chromium.

An admin signs in and sees the SLOs, alerts (with runbooks), the services' traffic, the download queue and the
database drawn from the platform's running Prometheus; a user gets the forbidden view, nobody signed in the sign-in
form; no console errors. A federated search is one trace in the embedded trace store holding the search service's,
the catalog's and the thesaurus's spans, found from the trace id the search service logged, and drawn as a
waterfall. Every metric the console queries exists in that Prometheus. Screenshots in results/screenshots/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from web_browser import (
    CHROMEDRIVER,
    CHROMIUM,
    LAPTOP,
    PHONE,
    SHOTS,
    console_errors,
    open_route,
    overflow,
    until,
    viewport,
)

from servers import wait_until

CONSOLE_JS = Path(__file__).resolve().parents[1] / "apps/web/src/eolake_web/static/js/console.js"
# Present only in some states of the platform, each named with why (the alerts and dashboards use them as well).
ONLY_SOMETIMES = {
    "pg_stat_replication_pg_wal_lsn_diff": "rows of pg_stat_replication: only while a standby streams",
    "eolake_download_jobs_total": "by outcome: only once an order has finished",
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason="needs Debian's chromium and chromium-driver (the bootstrap installs them)",
    ),
]


@pytest.fixture(scope="module")
def runtime(platform) -> dict:
    return platform.runtime()


def admin(platform) -> dict[str, str]:
    return {"X-API-Key": platform.key("admin")}


def proxied(platform, path: str, **params) -> httpx.Response:
    return httpx.get(f"{platform.base_url}/console/api/{path}", params=params, headers=admin(platform), timeout=30)


def logged_trace_id(platform, service: str, request_id: str) -> str | None:
    for line in (platform.state / "logs" / f"{service}.log").read_text(errors="replace").splitlines():
        if request_id in line and line.startswith("{"):
            entry = json.loads(line)
            if entry.get("request_id") == request_id and entry.get("trace_id"):
                return entry["trace_id"]
    return None


@pytest.fixture(scope="module")
def federated_trace(platform) -> dict:
    """A federated search with free text (expanded through the thesaurus), as one trace in the trace store."""
    words = iter(["water", "river", "lake", "flood", "soil", "forest", "glacier", "coast", "snow", "wetland"] * 6)

    def search_answers() -> httpx.Response | None:
        # A word not searched before: the search service keeps the thesaurus's expansions a while.
        answer = httpx.get(f"{platform.base_url}/search/search", params={"q": next(words), "limit": 5}, timeout=60)
        return answer if answer.status_code == 200 else None

    answer = wait_until(search_answers, timeout=120, interval=2)
    assert answer, "the federated search does not answer"
    request_id = answer.headers["x-request-id"]
    trace_id = wait_until(lambda: logged_trace_id(platform, "search", request_id), timeout=30)
    assert trace_id and re.fullmatch(r"[0-9a-f]{32}", trace_id), f"no trace id logged for request {request_id}"
    wanted = {"eolake-search", "eolake-catalog", "eolake-thesaurus"}

    seen: list[int] = []

    def assembled() -> dict | None:
        """Complete: the three services in, every span's parent too, and no span added for longer than the exporters'
        batch period (5 s: each process exports its own spans, in batches)."""
        found = proxied(platform, f"traces/{trace_id}")
        trace = found.json() if found.status_code == 200 else {"services": [], "spans": []}
        roots = [s for s in trace["spans"] if s["parent_span_id"] is None]
        orphans = [s for s in trace["spans"] if s["depth"] == 0 and s["parent_span_id"] is not None]
        settled = seen[-3:] == [len(trace["spans"])] * 3
        seen.append(len(trace["spans"]))
        return trace if wanted <= set(trace["services"]) and len(roots) == 1 and not orphans and settled else None

    trace = wait_until(assembled, timeout=90, interval=2)
    assert trace, f"trace {trace_id}: {proxied(platform, f'traces/{trace_id}').text[:2000]}"
    return trace


def test_a_federated_search_is_one_trace_through_search_catalog_and_thesaurus(federated_trace):
    spans = federated_trace["spans"]
    by_id = {s["span_id"]: s for s in spans}
    assert federated_trace["root"]["service"] == "eolake-gateway"
    assert spans[0]["parent_span_id"] is None and spans[0]["kind"] == "SERVER", "the root: the gateway's span"
    assert all(s["depth"] > 0 for s in spans[1:]), "every other span hangs from it"
    search_server = next(s for s in spans if s["service"] == "eolake-search" and s["kind"] == "SERVER")
    for callee in ("eolake-catalog", "eolake-thesaurus"):
        server = next(s for s in spans if s["service"] == callee and s["kind"] == "SERVER")
        ancestors, span = [], server
        while span["parent_span_id"] in by_id:
            span = by_id[span["parent_span_id"]]
            ancestors.append(span["span_id"])
        assert search_server["span_id"] in ancestors, f"{callee}'s span does not descend from the search's"
    assert all(s["depth"] >= 0 and s["offset_ms"] >= 0 for s in spans)


def test_every_metric_the_console_queries_exists(platform, runtime):
    prometheus = runtime["monitoring"]["prometheus"]["url"]
    source = CONSOLE_JS.read_text()
    block = source[source.index("export const QUERIES") : source.index("};", source.index("export const QUERIES"))]
    windows = re.findall(r"\['(\w+)', [\d.]+\]", source)
    names = set(re.findall(r"\b(slo:[\w:]+|eolake_\w+|pg_\w+|ALERTS)\b", block))
    metrics = {
        n + w if n.endswith("ratio_rate") else n for n in names for w in (windows if n.endswith("ratio_rate") else [""])
    } - set(ONLY_SOMETIMES)
    assert len(windows) == 5 and "slo:sli_error:ratio_rate3d" in metrics, (windows, metrics)
    assert {
        "slo:objective:ratio",
        "eolake_http_requests_total",
        "pg_database_size_bytes",
        "eolake_backup_last_success_timestamp_seconds",
        "eolake_download_queue_depth",
    } <= metrics, metrics

    def missing() -> set[str]:
        names = set(httpx.get(f"{prometheus}/api/v1/label/__name__/values", timeout=10).json()["data"])
        return metrics - names

    assert wait_until(lambda: not missing(), timeout=120, interval=3), f"no such metric: {sorted(missing())}"


def test_the_console_as_admin_user_and_anonymous(platform, browser, federated_trace):
    base = platform.base_url
    for path in ("/stac/search?collections=naip&limit=3", "/stac/collections", "/thesaurus/", "/search/collections"):
        httpx.get(base + path, timeout=60)
    # Prometheus has the SLO rules and two scrapes of the services (rate needs two samples).
    assert wait_until(
        lambda: proxied(platform, "prometheus/api/v1/query", query="slo:objective:ratio").json()["data"]["result"],
        timeout=120,
        interval=2,
    ), "no SLO recording rules"
    assert wait_until(
        lambda: proxied(
            platform, "prometheus/api/v1/query", query='sum(rate(eolake_http_requests_total{service="catalog"}[5m]))'
        ).json()["data"]["result"],
        timeout=120,
        interval=3,
    ), "no request rate yet"
    browser.get_log("browser")

    # Nobody signed in: the sign-in form.
    open_route(browser, base, "#/console")
    until(browser, "return document.body.dataset.console === 'sign-in'", "no sign-in view")
    assert browser.find_element(By.ID, "con-signin-key").is_displayed()

    # A user: signed in, but not an administrator.
    sign_in(browser, platform.key("user"))
    until(browser, "return document.body.dataset.console === 'forbidden'", "a user is not refused")
    assert "administrator" in browser.find_element(By.ID, "con-forbidden").text
    assert httpx.get(f"{base}/console/api/traces", headers={"X-API-Key": platform.key("user")}).status_code == 403
    refused = [e for e in console_errors(browser) if "403" not in e]  # Chromium logs the refusal: that is the point
    assert refused == []

    # An admin: every section drawn from the running Prometheus.
    browser.find_element(By.ID, "con-signout").click()
    until(browser, "return document.body.dataset.console === 'sign-in'", "sign out did not return to sign-in")
    sign_in(browser, platform.key("admin"))
    until(
        browser,
        "return document.body.dataset.console === 'overview' && window.eolake.console",
        "no overview",
        timeout=120,
    )
    slos = browser.execute_script(
        "return [...document.querySelectorAll('#con-slos [data-slo]')].map(e => e.dataset.slo)"
    )
    assert "catalog-search-availability" in slos and len(slos) >= 7, slos
    assert browser.find_elements(By.CSS_SELECTOR, "#con-slos figure.gauge svg[role=img]")
    assert not browser.find_elements(By.CSS_SELECTOR, ".con-error"), browser.find_element(By.ID, "content").text
    rate = browser.find_element(By.CSS_SELECTOR, "#con-services figure.chart-svg")
    assert int(rate.get_attribute("data-points")) > 0, "the request-rate chart has no data"
    assert "catalog" in rate.find_element(By.TAG_NAME, "svg").get_attribute("aria-label")
    until(
        browser,
        "return document.querySelector('#con-alerts [data-alert=\"Watchdog\"] a.runbook') !== null",
        "the Watchdog (always firing) is not listed with its runbook",
    )
    runbook = browser.find_element(By.CSS_SELECTOR, '#con-alerts [data-alert="Watchdog"] a.runbook')
    assert runbook.get_attribute("href").endswith("/monitoring/runbooks/Watchdog.md")
    database = browser.find_element(By.ID, "con-database")
    connections = database.find_element(By.CSS_SELECTOR, "figure.gauge").get_attribute("data-value")
    assert float(connections) > 0, "no database connection drawn"
    assert browser.find_elements(By.CSS_SELECTOR, "#con-downloads figure.chart-svg")
    assert not browser.find_elements(By.CSS_SELECTOR, "#content table"), "pictures, not tables"
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "console-health.png"))

    # Traces: the recent list, then the federated search's waterfall found by its trace id.
    browser.find_element(By.CSS_SELECTOR, '.con-tabs a[href="#/console/traces"]').click()
    until(browser, "return document.body.dataset.console === 'traces'", "no traces page")
    assert browser.find_elements(By.CSS_SELECTOR, ".con-traces[data-kind=recent] li a")
    browser.find_element(By.ID, "trace-id").send_keys(federated_trace["trace_id"])
    browser.find_element(By.CSS_SELECTOR, "#trace-form button").click()
    until(browser, "return document.body.dataset.console === 'trace'", "the trace was not shown")
    waterfall = browser.find_element(By.ID, "waterfall")
    drawn = set(waterfall.get_attribute("data-services").split())
    assert {"eolake-search", "eolake-catalog", "eolake-thesaurus"} <= drawn, drawn
    stored = proxied(platform, f"traces/{federated_trace['trace_id']}").json()["span_count"]
    assert federated_trace["span_count"] <= int(waterfall.get_attribute("data-spans")) <= stored, "spans not drawn"
    browser.find_element(By.CSS_SELECTOR, "#waterfall g[data-span]").click()
    assert "eolake-gateway" in browser.find_element(By.ID, "span-hint").text
    browser.save_screenshot(str(SHOTS / "console-trace.png"))
    open_route(browser, base, f"#/console/traces/{'0' * 32}")
    until(browser, "return document.getElementById('trace-missing') !== null", "an unknown trace is not said so")

    assert [e for e in console_errors(browser) if "/console/api/traces/0000" not in e] == []

    # At a phone's width nothing sticks out: the charts shrink to the column.
    viewport(browser, *PHONE)
    try:
        for route, view in ((f"#/console/traces/{federated_trace['trace_id']}", "trace"), ("#/console", "overview")):
            open_route(browser, base, route)
            until(
                browser,
                f"return document.body.dataset.console === '{view}' && "
                "document.querySelectorAll('#content figure').length > 0",
                f"{route} at phone width",
            )
            assert overflow(browser) == [], route
    finally:
        viewport(browser, *LAPTOP)


def sign_in(driver, key: str) -> None:
    field = driver.find_element(By.ID, "con-signin-key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#con-signin button[type=submit]").click()
