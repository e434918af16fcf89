"""The service kit on a small app: trace propagation, request ids, logs, readiness timeouts, crashes."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from fastapi import FastAPI

from eolake_kit import ServiceSettings, install_kit
from eolake_kit.logs import JsonFormatter, request_id, trace_id
from servers import served

TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE}-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def service():
    state = {"slow": False}
    app = FastAPI()

    @app.get("/context")
    async def context() -> dict:
        return {"trace_id": trace_id.get(), "request_id": request_id.get()}

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("secret internals")

    async def dependency() -> None:
        if state["slow"]:
            await asyncio.sleep(5)

    settings = ServiceSettings(service_name="demo", root_path="/demo", readiness_timeout=0.3)
    install_kit(app, settings, checks={"dependency": dependency})
    with served(app) as url:
        yield url, state


def test_w3c_trace_context_is_continued(service):
    url, _ = service
    answer = httpx.get(url + "/demo/context", headers={"traceparent": TRACEPARENT}).json()
    assert answer["trace_id"] == TRACE
    fresh = httpx.get(url + "/demo/context").json()
    assert len(fresh["trace_id"]) == 32 and fresh["trace_id"] != TRACE


def test_request_id_reaches_the_handler_and_the_response(service):
    url, _ = service
    response = httpx.get(url + "/demo/context", headers={"X-Request-ID": "req-42"})
    assert response.json()["request_id"] == "req-42" and response.headers["x-request-id"] == "req-42"


def test_crash_is_problem_json_without_internals(service):
    url, _ = service
    response = httpx.get(url + "/demo/boom")
    assert response.status_code == 500 and response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert "secret internals" not in response.text
    assert body["request_id"] == response.headers["x-request-id"]


def test_readiness_check_timeout_is_503_while_liveness_stays_200(service):
    url, state = service
    assert httpx.get(url + "/readyz").json()["checks"]["dependency"]["status"] == "up"
    state["slow"] = True
    try:
        response = httpx.get(url + "/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["dependency"] == {"status": "down", "error": "no answer within 0.3 s"}
        assert httpx.get(url + "/healthz").status_code == 200
    finally:
        state["slow"] = False


def test_unmatched_paths_share_one_metric_label(service):
    url, _ = service
    for n in range(3):
        httpx.get(url + f"/demo/random-{n}")
    text = httpx.get(url + "/metrics").text
    assert 'route="unmatched",service="demo",status_class="4xx"' in text
    assert "random-" not in text


def test_json_log_lines_carry_ids():
    formatter = JsonFormatter("demo")
    tokens = request_id.set("rid-1"), trace_id.set(TRACE)
    try:
        record = logging.LogRecord("eolake.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
        record.status = 200
        line = json.loads(formatter.format(record))
    finally:
        request_id.reset(tokens[0])
        trace_id.reset(tokens[1])
    assert line["message"] == "GET /x" and line["status"] == 200
    assert line["request_id"] == "rid-1" and line["trace_id"] == TRACE and line["service"] == "demo"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"root_path": "stac"}, "not a path prefix"),
        ({"public_url": "http://h/sub"}, "put the service prefix in root_path"),
    ],
)
def test_impossible_settings_fail_at_start(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ServiceSettings(**kwargs)
