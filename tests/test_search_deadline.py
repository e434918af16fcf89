"""A caller's deadline on the federated search (`deadline_ms`), against providers that are processes of their own
(tests/stub_stac.py, no database): a fast one, one that lags a little, and one far slower than any deadline here.
What is asserted is the content of the pages (which providers are in them, `partial`, the token), never a time."""

from __future__ import annotations

import asyncio
import json
from contextlib import ExitStack
from pathlib import Path

import pytest
from eolake_search.app import create_app
from eolake_search.federation import ProviderRun, gather_until
from eolake_search.settings import ProviderConfig, SearchSettings
from fastapi.testclient import TestClient
from test_search import item, problem

from servers import stub_stac

FAST = [item(f"fast-{i}", 2 * i + 2) for i in range(5)]
LAGGING = [item(f"lag-{i}", 2 * i + 1) for i in range(3)]
SLOW = [item(f"slow-{i}", 2 * i + 1) for i in range(5)] + FAST[:2]  # also holds copies of the fast one's
SLOW_MS = 60_000  # never waited for here: a test that did would hang until the provider's timeout
NEWEST_FIRST = sorted(FAST, key=lambda i: i["properties"]["datetime"], reverse=True)


def ndjson(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deadline")
    with ExitStack() as stack:
        fast, lagging, slow = (
            stack.enter_context(stub_stac(ndjson(folder / f"{name}.ndjson", items), folder / f"{name}.log", delay))
            for name, items, delay in (("fast", FAST, 0), ("lagging", LAGGING, 300), ("slow", SLOW, SLOW_MS))
        )
        settings = SearchSettings(
            peers={"catalog": {"url": fast}, "thesaurus": {"url": fast}},
            local_provider="fast",
            root_path="",
            storage_path=folder,
            providers=[
                ProviderConfig(name="lagging", url=lagging, timeout_seconds=60),
                ProviderConfig(name="slow", url=slow, timeout_seconds=SLOW_MS / 1000 + 60),
            ],
        )
        yield stack.enter_context(TestClient(create_app(settings)))


def ids(page: dict) -> list[str]:
    return [f["id"] for f in page["features"]]


def next_page(search, page: dict, method: str) -> dict | None:
    link = next((link for link in page["links"] if link["rel"] == "next"), None)
    if link is None:
        return None
    if method == "POST":
        response = search.post("/search", json=link["body"])
    else:
        response = search.get("/search?" + link["href"].split("?", 1)[1])
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_late_provider_is_left_out_named_and_the_walk_goes_on_without_it(search, method):
    query = {"providers": ["fast", "slow"], "limit": 2, "deadline_ms": 200}
    response = (
        search.post("/search", json=query)
        if method == "POST"
        else search.get("/search", params={**query, "providers": "fast,slow"})
    )
    assert response.status_code == 200, response.text
    first = response.json()
    assert first["federation"]["slow"]["status"] == "late"
    assert "deadline" in first["federation"]["slow"]["error"]
    assert first["partial"] is True and first["failed_providers"] == ["slow"]
    pages = [first]
    while (page := next_page(search, pages[-1], method)) is not None:
        pages.append(page)
        assert page["federation"]["slow"]["reason"] == "failed on an earlier page"
        assert page["partial"] is True and page["failed_providers"] == ["slow"]
    assert [i for p in pages for i in ids(p)] == [i["id"] for i in NEWEST_FIRST]  # each once, in order


def test_the_deadline_waits_for_a_first_answer(search):
    page = search.post("/search", json={"providers": ["lagging", "slow"], "deadline_ms": 1}).json()
    assert ids(page) == [i["id"] for i in reversed(LAGGING)]
    assert page["federation"]["lagging"]["status"] == "ok" and page["federation"]["slow"]["status"] == "late"
    assert page["failed_providers"] == ["slow"]


def test_without_a_deadline_every_provider_is_waited_for(search):
    page = search.post("/search", json={"providers": ["fast", "lagging"], "limit": 20}).json()
    assert sorted(ids(page)) == sorted(i["id"] for i in FAST + LAGGING)
    assert page["partial"] is False and page["failed_providers"] == []


@pytest.mark.parametrize("value", [0, -5, "soon", 10**9, 1.5e9])
def test_a_bad_deadline_is_a_400_problem(search, value):
    detail = problem(search.post("/search", json={"deadline_ms": value}), 400)["detail"]
    assert "deadline_ms" in detail
    assert "deadline_ms" in problem(search.get("/search", params={"deadline_ms": value}), 400)["detail"]


def test_the_deadline_is_documented(search):
    paths = search.get("/openapi.json").json()["paths"]
    assert [p["name"] for p in paths["/search"]["get"]["parameters"]] == ["deadline_ms"]
    body = paths["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["deadline_ms"]["maximum"] == 120_000


@pytest.mark.parametrize(
    ("deadline", "caller_leaves"), [(None, True), (60.0, True), (0.05, False)], ids=["wait", "deadline", "late"]
)
def test_provider_calls_end_with_their_search(deadline, caller_leaves):
    """A search cancelled while it waits (its caller went away), with or without a deadline, cancels the provider
    calls it started; a deadline that passes cancels the late ones: no call outlives the search that made it."""

    async def scenario() -> None:
        started, cancelled = asyncio.Event(), asyncio.Event()

        async def never_answers() -> ProviderRun:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            raise AssertionError("unreachable")

        async def answers() -> ProviderRun:
            await started.wait()
            return ProviderRun("quick")

        jobs = [(["never"], never_answers()), (["quick"], answers())]
        search = asyncio.ensure_future(gather_until(jobs, deadline))
        if caller_leaves:
            await started.wait()
            search.cancel()
        else:
            runs = await search
            assert [(r.name, r.status) for r in runs] == [("never", "late"), ("quick", "ok")]
        await asyncio.wait_for(cancelled.wait(), 30)  # a bound on a hang, not a timing

    asyncio.run(scenario())
