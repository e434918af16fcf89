"""The federated item search: one checked request (stac_request) sent to every provider in parallel, the answers
merged into one page with its links and token. No web framework in here: the routers (item_routes) call it.

Sorting: without `sortby`, datetime then id descending (pgstac's default order). With `sortby`, every STAC provider
is asked to sort the same way and the streams are merged in that order. A provider that cannot sort (an EODAG
provider, or one configured `sortable: false`) is asked without `sortby` and each page it returns is sorted here
before the merge: the order is exact across the providers that sort and per page for those that do not; the page's
`federation` report marks those `"sorted": false`. `fields` is applied here after the merge (the merge needs each
item's datetime and id), the same way for every provider.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlencode

from eolake_kit.refs import segment
from eolake_kit.stac import select_fields
from eolake_search.federation import (
    FAILED_EARLIER,
    BadToken,
    ProviderRun,
    cascade_of,
    cascade_report,
    decode_token,
    encode_token,
    failed_providers,
    fetch,
    fingerprint,
    first_answering,
    gather_until,
    merge,
    next_state,
    skip_reason,
    sort_key,
)
from eolake_search.providers import ProviderError, describe
from eolake_search.responses import GEOJSON
from eolake_search.settings import ProviderConfig
from eolake_search.stac_request import BadSearch, SearchRequest, order_key

# expand(q, lang, depth) -> (terms for the providers, the expansion report, collections whose metadata matched)
Expander = Callable[[list[str], str | None, int, bool], Awaitable[tuple[list[str], dict[str, Any], list[str]]]]


@dataclass
class Page:
    """Where the answer is served (links are built from it) and how it was asked."""

    base: str
    path: str
    method: str
    params: dict[str, Any]


class FederatedItems:
    """`limits`: default_limit, max_limit, expansion_depth and provider_page_max (the service's settings)."""

    def __init__(
        self,
        configs: list[ProviderConfig],
        providers: Callable[[], dict[str, Any]],
        expander: Expander,
        token_key: bytes,
        limits: Any,
    ):
        self.configs = {c.name: c for c in configs}
        self.providers, self.expander, self.token_key, self.limits = providers, expander, token_key, limits
        self.page_max = limits.provider_page_max
        self.searchable = [c.name for c in configs if c.item_search]
        self.typical_ms: dict[str, float] = {}  # each provider's recent answer time (moving average)

    async def gather(
        self, path: str, params: dict[str, Any] | None = None, only: list[str] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """GET `path` of every provider (or `only` these) in parallel: (answers by name, status by name)."""

        async def one(name: str) -> tuple[str, Any, dict[str, Any]]:
            start = time.perf_counter()
            try:
                data = await asyncio.wait_for(
                    self.providers()[name].get(path, params), self.configs[name].timeout_seconds
                )
                return name, data, {"status": "ok", "ms": round((time.perf_counter() - start) * 1000, 1)}
            except TimeoutError:
                status: dict[str, Any] = {
                    "status": "timeout",
                    "error": f"no answer within {self.configs[name].timeout_seconds:g} s",
                }
            except ProviderError as exc:
                status = {"status": "error", "error": describe(exc), "http_status": exc.status}
            except Exception as exc:
                status = {"status": "error", "error": describe(exc)}
            return name, None, {**status, "ms": round((time.perf_counter() - start) * 1000, 1)}

        results = await asyncio.gather(*(one(n) for n in (only if only is not None else self.providers())))
        return {n: d for n, d, _ in results}, {n: s for n, _, s in results}

    def serving(self, collection_id: str) -> list[str]:
        """The item-searchable providers that may hold the collection."""
        return [
            n
            for n in self.searchable
            if not self.configs[n].collections or collection_id in self.configs[n].collections
        ]

    async def search(self, request: SearchRequest, page: Page) -> dict[str, Any]:
        self._check_providers(request.providers)
        query_id = fingerprint(
            {
                **request.body,
                "q": request.q,
                "expand": request.expand,
                "providers": request.providers,
                "depth": request.depth,
            }
        )
        previous = self._previous(request.token, query_id)
        body, expansion, by_collection = await self._expanded(request)
        runs, skipped, cascade = await self._run(request, body, by_collection, previous)
        if runs and all(r.status == "error" and r.http_status == 400 for r in runs):
            raise BadSearch("every provider refused the search: " + str(runs[0].error))
        failed = failed_providers(runs, skipped)  # EveryProviderFailed when no provider answered
        features = merge(runs, request.limit, order_key(request.sortby) if request.sortby else sort_key)
        # A provider skipped for this page keeps its entry (a cascade's passed-over providers stay passed over).
        state = next_state(
            runs,
            {
                "p": {
                    **previous["p"],
                    **{
                        n: previous["p"].get(n) or {"done": True}
                        for n, s in skipped.items()
                        if s["reason"] != FAILED_EARLIER
                    },
                }
            },
            query_id,
        )
        answer = self._answer(request, page, runs, skipped, features, state, failed, expansion)
        return answer | cascade_report(cascade, runs, previous)

    def _check_providers(self, wanted: list[str]) -> None:
        bad = [p for p in wanted if p not in self.providers()]
        if bad:
            raise BadSearch(f"unknown provider(s): {', '.join(bad)}; known: {', '.join(self.providers())}")

    def _previous(self, token: str | None, query_id: str) -> dict[str, Any]:
        if not token:
            return {"p": {}}
        try:
            previous = decode_token(token, self.token_key)
        except BadToken as exc:
            raise BadSearch(str(exc)) from exc
        if previous.get("q") != query_id:
            raise BadSearch("the page token belongs to another search")
        return previous

    async def _expanded(self, request: SearchRequest) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        if not request.q:
            return request.body, {"applied": False}, []
        terms, expansion, by_collection = await self.expander(request.q, request.lang, request.depth, request.expand)
        if by_collection:
            expansion["collections"] = by_collection
        return {**request.body, "q": terms}, expansion, by_collection

    async def _run(
        self, request: SearchRequest, body: dict[str, Any], by_collection: list[str], previous: dict[str, Any]
    ) -> tuple[list[ProviderRun], dict[str, dict[str, Any]], list[str]]:
        """Every provider at once, except a cascade (the collections' priority list): those one after the other
        until one answers."""
        names = [n for n in self.searchable if not request.providers or n in request.providers]
        cascade = cascade_of(names, body.get("collections"), self.limits.priorities, named=bool(request.providers))
        skipped: dict[str, dict[str, Any]] = {}
        calls: dict[str, Callable[[], Awaitable[ProviderRun]]] = {}
        for name in names:
            entry = previous["p"].get(name, {})
            reason = skip_reason(entry)
            provider_body = None if reason else self._provider_body(self.configs[name], body, by_collection)
            if provider_body is None:
                skipped[name] = {"status": "skipped", "count": 0, "ms": 0, "reason": reason or "collections not served"}
                continue
            calls[name] = partial(self._fetch, name, provider_body, entry, request)
        in_cascade = [(n, calls.pop(n)) for n in cascade if n in calls]
        # The slowest first: its request leaves before the others are written, and its wait is the search's.
        slowest_first = sorted(calls.items(), key=lambda nc: -self.typical_ms.get(nc[0], 0.0))
        jobs: list[tuple[list[str], Awaitable[ProviderRun | list[ProviderRun]]]] = [
            ([name], call()) for name, call in slowest_first
        ]
        if in_cascade:
            jobs.append(([n for n, _ in in_cascade], first_answering(in_cascade)))
        runs = await gather_until(jobs, request.deadline)
        self._learn(runs)
        rank = {name: i for i, name in enumerate([*calls, *(n for n, _ in in_cascade)])}
        return sorted(runs, key=lambda r: rank.get(r.name, len(rank))), skipped, cascade  # reported as configured

    def _learn(self, runs: list[ProviderRun]) -> None:
        for run in runs:
            if run.status == "ok":
                before = self.typical_ms.get(run.name, run.ms)
                self.typical_ms[run.name] = 0.8 * before + 0.2 * run.ms

    def _provider_body(
        self, config: ProviderConfig, body: dict[str, Any], by_collection: list[str]
    ) -> dict[str, Any] | None:
        out = provider_query(body, config.free_text, by_collection)
        if not sortable(config):
            out.pop("sortby", None)
        if config.collections:
            cols = [c for c in body.get("collections", config.collections) if c in config.collections]
            if not cols:
                return None
            out["collections"] = cols
        return out

    async def _fetch(
        self, name: str, body: dict[str, Any], entry: dict[str, Any], request: SearchRequest
    ) -> ProviderRun:
        config = self.configs[name]
        run = await fetch(
            self.providers()[name],
            body,
            entry.get("c"),
            entry.get("s", 0),
            request.limit,
            self.page_max,
            config.timeout_seconds,
        )
        if request.sortby and not sortable(config) and run.page is not None:
            run.page.items.sort(key=order_key(request.sortby))
        return run

    def _answer(
        self,
        request: SearchRequest,
        page: Page,
        runs: list[ProviderRun],
        skipped: dict[str, Any],
        features: list[dict[str, Any]],
        state: dict[str, Any] | None,
        failed: list[str],
        expansion: dict[str, Any],
    ) -> dict[str, Any]:
        federation = {**{r.name: self._report(r, request) for r in runs}, **skipped}
        ok = [r for r in runs if r.status == "ok" and r.page]
        # A total only when it is right: one provider could have results and it counted (pgstac counts only with its
        # `context` setting on). Copies across providers and providers that did not count leave it absent (clients
        # such as pystac-client read numberMatched, then context.matched, as the truth).
        alone = all(s["reason"] == "collections not served" for s in skipped.values())
        matched = ok[0].page.matched if len(ok) == 1 and ok[0].page else None
        exact = alone and len(runs) == len(ok) == 1 and matched is not None
        for feature in features:
            item_links(feature, page.base)
        if request.fields is not None:
            features = [select_fields(f, request.fields) for f in features]
        out: dict[str, Any] = {
            "type": "FeatureCollection",
            "features": features,
            "links": self._links(page, state),
            "numberReturned": len(features),
            "context": {"returned": len(features), "limit": request.limit},
            "federation": federation,
            "partial": bool(failed),
            "failed_providers": failed,
            "expansion": expansion,
        }
        if exact:
            out["numberMatched"] = out["context"]["matched"] = matched
        return out

    def _report(self, run: ProviderRun, request: SearchRequest) -> dict[str, Any]:
        report = run.report()
        if request.sortby and not sortable(self.configs[run.name]):
            report["sorted"] = False
        return report

    def _links(self, page: Page, state: dict[str, Any] | None) -> list[dict[str, Any]]:
        links: list[dict[str, Any]] = [{"rel": "root", "type": "application/json", "href": f"{page.base}/"}]
        params = {k: _param(v) for k, v in page.params.items() if k != "token"}
        query = f"?{urlencode(params)}" if params and page.method == "GET" else ""
        links.append({"rel": "self", "type": GEOJSON, "href": f"{page.base}{page.path}{query}"})
        if state is None:
            return links
        token = encode_token(state, self.token_key)
        if page.method == "GET":
            links.append(
                {
                    "rel": "next",
                    "type": GEOJSON,
                    "method": "GET",
                    "href": f"{page.base}{page.path}?{urlencode({**params, 'token': token})}",
                }
            )
        else:
            links.append(
                {
                    "rel": "next",
                    "type": GEOJSON,
                    "method": "POST",
                    "merge": True,
                    "href": f"{page.base}{page.path}",
                    "body": {**page.params, "token": token},
                }
            )
        return links


def sortable(config: ProviderConfig) -> bool:
    return config.sortable and config.kind == "stac"


def provider_query(body: dict[str, Any], mode: str, collections: list[str] | None = None) -> dict[str, Any]:
    """The search body for one provider: `q` as the free-text parameter (quoted phrases), or as a CQL2 filter
    that also takes every item of the collections whose metadata matched."""
    out = dict(body)
    terms = out.pop("q", None)
    if not terms:
        return out
    if mode == "q":
        out["q"] = [f'"{t}"' if " " in t else t for t in terms]
        return out
    keywords = list(dict.fromkeys([*terms, *(t.lower() for t in terms)]))
    ors: list[dict[str, Any]] = [{"op": "a_overlaps", "args": [{"property": "keywords"}, keywords]}]
    for term in terms:
        pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        for prop in ("title", "description"):
            ors.append({"op": "like", "args": [_fold({"property": prop}), _fold(pattern)]})
    if collections:
        ors.append({"op": "in", "args": [{"property": "collection"}, collections]})
    text = {"op": "or", "args": ors}
    out["filter"] = {"op": "and", "args": [out["filter"], text]} if out.get("filter") else text
    out["filter-lang"] = "cql2-json"
    return out


def _fold(arg: Any) -> dict[str, Any]:
    return {"op": "accenti", "args": [{"op": "casei", "args": [arg]}]}


def _param(value: Any) -> str:
    import json

    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def item_links(item: dict[str, Any], base: str) -> None:
    """The provider's own self link kept as `via`; self, root, parent and collection point into the federated API."""
    links = []
    for link in item.get("links", []):
        if link.get("rel") == "self":
            links.append({**link, "rel": "via"})
        elif link.get("rel") not in ("root", "parent", "collection"):
            links.append(link)
    links.append({"rel": "root", "type": "application/json", "href": f"{base}/"})
    collection = item.get("collection")
    if collection:
        href = f"{base}/collections/{segment(str(collection))}"
        links += [
            {"rel": "collection", "type": "application/json", "href": href},
            {"rel": "parent", "type": "application/json", "href": href},
            {"rel": "self", "type": GEOJSON, "href": f"{href}/items/{segment(str(item.get('id')))}"},
        ]
    item["links"] = links
