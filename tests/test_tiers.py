"""The pure cores of storage tiers and provider priorities: the STAC vocabulary of offline items, the order in which
an asset's providers are tried, and the federated search's cascades (no server, no database)."""

from __future__ import annotations

import asyncio

import pytest
from eolake_downloads import tiers
from eolake_search.federation import ProviderRun, cascade_of, cascade_report, first_answering, next_state, skip_reason
from eolake_search.providers import Page

ITEM = {
    "type": "Feature",
    "id": "i",
    "collection": "c",
    "properties": {"datetime": None},
    "links": [{"rel": "license", "href": "https://x"}],
    "assets": {
        "data": {"href": "/tape/i.tif", "alternate": {"mirror": {"href": "https://m/i.tif"}, "broken": "not an object"}}
    },
}


def test_offline_and_back_online_leave_the_original_alone():
    offline = tiers.mark_offline(ITEM, "/downloads/retrievals")
    assert tiers.is_offline(offline) and not tiers.is_offline(ITEM) and "storage:tier" not in ITEM["properties"]
    assert offline["properties"]["order:status"] == "orderable"
    assert [x["rel"] for x in offline["links"]] == ["license", "retrieve"]
    assert tiers.mark_offline(offline, "/elsewhere")["links"][-1]["href"] == "/elsewhere"  # one retrieve link
    online = tiers.mark_online(offline, {"data": "/disk/i.tif"})
    assert online["properties"] | {"datetime": None} == {
        "datetime": None,
        "storage:tier": "online",
        "order:status": "succeeded",
    }
    assert online["assets"]["data"]["href"] == "/disk/i.tif" and offline["assets"]["data"]["href"] == "/tape/i.tif"
    assert [x["rel"] for x in online["links"]] == ["license"]
    assert online["stac_extensions"] == [tiers.STORAGE_EXT, tiers.ORDER_EXT]


@pytest.mark.parametrize(
    ("priority", "only", "expected"),
    [
        ([], None, ["local", "mirror"]),
        (["mirror", "local"], None, ["mirror", "local"]),
        (["nowhere", "mirror"], None, ["mirror", "local"]),
        (["mirror"], "local", ["local"]),
    ],
)
def test_an_assets_providers_in_priority_order(priority, only, expected):
    ranked = tiers.ranked_sources(ITEM["assets"]["data"], priority, only)
    assert [s["provider"] for s in ranked] == expected
    assert dict((s["provider"], s["href"]) for s in ranked).get("mirror", "https://m/i.tif") == "https://m/i.tif"


def test_an_unknown_provider_is_refused():
    with pytest.raises(tiers.NoSuchProvider, match="'broken' has no copy"):
        tiers.ranked_sources(ITEM["assets"]["data"], [], "broken")


@pytest.mark.parametrize(
    ("collections", "expected"),
    [
        (["c"], ["b", "a"]),
        (["c", "d"], ["b", "a"]),  # the same list
        (["c", "e"], []),  # different lists: no cascade
        (None, ["a"]),  # the '*' list
        (["f"], ["a"]),  # a collection without its own
    ],
)
def test_cascades(collections, expected):
    priorities = {"c": ["x", "b", "a"], "d": ["x", "b", "a"], "e": ["a", "b"], "*": ["a"]}
    assert cascade_of(["a", "b"], collections, priorities) == expected
    assert cascade_of(["a", "b"], collections, priorities, named=True) == []


class Provider:
    def __init__(self, name: str, ok: bool):
        self.name, self.ok, self.asked = name, ok, 0

    async def call(self) -> ProviderRun:
        self.asked += 1
        if not self.ok:
            return ProviderRun(self.name, status="error", error="HTTP 500")
        return ProviderRun(self.name, page=Page([{"id": "1"}], {"href": "/next"}, 1))


def test_the_first_that_answers_serves_and_the_token_remembers_it():
    a, b, c = Provider("a", False), Provider("b", True), Provider("c", True)
    runs = asyncio.run(first_answering([(p.name, p.call) for p in (a, b, c)]))
    assert [(r.name, r.status, r.answered_by) for r in runs] == [
        ("a", "error", "b"),
        ("b", "ok", None),
        ("c", "skipped", "b"),
    ]
    assert (a.asked, b.asked, c.asked) == (1, 1, 0)
    assert runs[0].report()["answered_by"] == "b"
    state = next_state(runs, {"p": {}}, "q")
    assert state["p"]["a"] == state["p"]["c"] == {"done": True, "answered_by": "b"} and "c" in state["p"]["b"]
    assert skip_reason(state["p"]["a"]) == "in cascade: b answered" and skip_reason(state["p"]["b"]) is None
    assert cascade_report(["a", "b", "c"], runs, {"p": {}}) == {
        "cascade": {"providers": ["a", "b", "c"], "answered_by": "b"}
    }
    assert cascade_report(["a", "b", "c"], [], state)["cascade"]["answered_by"] == "b"  # a later page
    assert cascade_report([], runs, state) == {}


def test_a_cascade_nobody_answered_reports_every_failure():
    runs = asyncio.run(first_answering([(p.name, p.call) for p in (Provider("a", False), Provider("b", False))]))
    assert [(r.status, r.answered_by) for r in runs] == [("error", None), ("error", None)]
