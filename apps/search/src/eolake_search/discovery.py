"""Collection search over the harmonised dataset catalog: free text, CQL2 filter, sort, fields, facets, paging.

No framework here: the routes parse the request and the thesaurus answer, this module answers the search.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from itertools import chain
from typing import Any

from eolake_search.datasets import BACKENDS, eodag_collections, eodag_provider, from_eodag, from_stac, merge
from eolake_search.engine import Index, Query
from eolake_search.federation import fingerprint
from eolake_search.settings import ProviderConfig

QUERYABLES = {
    "id": {"type": "string", "title": "Collection id"},
    "title": {"type": "string"},
    "license": {"type": "string"},
    "platform": {"type": "array", "items": {"type": "string"}},
    "constellation": {"type": "array", "items": {"type": "string"}},
    "instruments": {"type": "array", "items": {"type": "string"}},
    "processing:level": {"type": "array", "items": {"type": "string"}},
    "keywords": {"type": "array", "items": {"type": "string"}},
    "provider": {"type": "array", "items": {"type": "string"}, "title": "Providers serving the collection"},
    "decade": {
        "type": "array",
        "items": {"type": "string", "pattern": "^[0-9]{3}0s$"},
        "title": 'Decades the collection\'s temporal extent covers ("2010s"; open-ended: up to this one)',
    },
}
SORTABLE = {"id", "title", "license"}
# facet name -> the queryable whose values it counts (a CQL2 a_overlaps on it narrows to a value)
FACETS = {
    "provider": "provider",
    "platform": "platform",
    "instrument": "instruments",
    "processing_level": "processing:level",
    "keyword": "keywords",
    "decade": "decade",
}


def eodag_sources(configs: list[ProviderConfig]) -> list[tuple[str, int, list[dict]]]:
    """The collections of the EODAG providers, from EODAG's files (no network)."""
    known = eodag_collections()
    sources = []
    for rank, config in enumerate(configs):
        if config.kind != "eodag":
            continue
        priority, ids = eodag_provider(config.name)
        ids = [c for c in ids if not config.collections or c in config.collections]
        sources.append((config.name, priority - rank, [from_eodag(c, known[c]) for c in ids]))
    return sources


class Catalog:
    """The current index: EODAG's part read once, the STAC providers' collections fetched again after `ttl`
    seconds (a failed fetch keeps that provider's last answer); the index is rebuilt only when they changed."""

    def __init__(
        self, configs: list[ProviderConfig], fetch: Callable[[str], Awaitable[list[dict] | None]], ttl: float = 30.0
    ):
        self.configs, self.fetch, self.ttl = configs, fetch, ttl
        self.static = eodag_sources(configs)
        self.stac: dict[str, list[dict]] = {}
        self.status: dict[str, dict] = {}
        self.index: Index | None = None
        self.version = ""
        self.pending: asyncio.Task | None = None
        self.built = float("-inf")

    async def current(self) -> Index:
        """The index; once built, an expired one is refreshed in the background while it keeps answering."""
        if self.index is None:
            await self.refresh()
        elif time.monotonic() - self.built > self.ttl and (self.pending is None or self.pending.done()):
            self.built = time.monotonic()
            self.pending = asyncio.create_task(self.refresh())
        assert self.index is not None  # built by the first refresh
        return self.index

    async def refresh(self) -> None:
        for config in self.configs:
            if config.kind != "stac":
                continue
            collections = await self.fetch(config.name)
            if collections is None:
                self.status[config.name] = {"status": "error", "count": len(self.stac.get(config.name, []))}
                continue
            wanted = [
                c
                for c in collections
                if isinstance(c, dict)
                and isinstance(c.get("id"), str)
                and (not config.collections or c["id"] in config.collections)
            ]
            self.stac[config.name] = [from_stac(c) for c in wanted]
            self.status[config.name] = {"status": "ok", "count": len(wanted)}
        for name, _, records in self.static:
            self.status[name] = {"status": "ok", "count": len(records), "source": "eodag metadata (offline)"}
        ranks = {c.name: -rank for rank, c in enumerate(self.configs)}
        stac = [(name, ranks[name], records) for name, records in self.stac.items()]
        version = fingerprint(stac)
        if self.index is None or version != self.version:  # unchanged collections: keep the index
            self.index = await asyncio.to_thread(Index, merge([*stac, *self.static]))  # off the event loop
            self.version = version
        self.built = time.monotonic()


@dataclass
class Found:
    records: list[dict]
    scores: dict[str, float]
    facets: dict
    index: Index | None = None  # the index searched


def properties(record: dict) -> dict:
    """What CQL2 filters (and facets) see of a collection."""
    summaries = record.get("summaries") or {}
    return {
        "id": record["id"],
        "title": record.get("title"),
        "license": record.get("license"),
        "keywords": record.get("keywords") or [],
        "provider": record.get(BACKENDS) or [],
        "decade": list(decades(record)),
        **{k: summaries.get(k) or [] for k in ("platform", "constellation", "instruments", "processing:level")},
    }


def decades(record: dict, this_year: int | None = None) -> tuple[str, ...]:
    """The decades a collection's overall temporal extent (its first interval) covers, "1990s" to "2020s"; an open
    end runs to the current decade; no start, none."""
    try:
        start, end = (list(record["extent"]["temporal"]["interval"][0]) + [None, None])[:2]
    except (KeyError, IndexError, TypeError):
        return ()
    return _decades(str(start) if start else None, str(end) if end else None, this_year or datetime.now(UTC).year)


@lru_cache(maxsize=4096)
def _decades(start: str | None, end: str | None, this_year: int) -> tuple[str, ...]:
    first, last = _year(start), _year(end) or this_year
    if first is None or last < first:
        return ()
    return tuple(f"{d}s" for d in range(first // 10 * 10, last // 10 * 10 + 1, 10))


def _year(text: str | None) -> int | None:
    return int(text[:4]) if text and text[:4].isdigit() else None


def find(index: Index, query: Query | None, cql=None, sortby: list[tuple[str, bool]] | None = None) -> Found:
    """Every matching record (duplicates were collapsed when the index was built), in order, with facets."""
    if query is None or query.empty:
        ranked = [(r, 0.0) for r in index.records]
    else:
        ranked = index.rank(query)
    if cql is not None:
        ranked = [(r, s) for r, s in ranked if cql.matches({"id": r["id"], "properties": properties(r)})]
    if sortby:
        for key, descending in reversed(sortby):
            ranked.sort(key=partial(_sort_text, key), reverse=descending)
    records = [r for r, _ in ranked]
    return Found(records, {r["id"]: s for r, s in ranked}, facets(records), index)


def _sort_text(key: str, ranked: tuple[dict[str, Any], float]) -> str:
    return str(ranked[0].get(key) or "").lower()


def facets(records: list[dict], top: int = 20) -> dict:
    """Counts per value; `missing` counts records without any, so a single-valued facet's counts and its
    `missing` add up to the number matched."""
    out = {}
    this_year = datetime.now(UTC).year
    for name, key in FACETS.items():
        of = facet_values(key, this_year)
        values = [set(of(record)) for record in records]
        counts = Counter(chain.from_iterable(values))  # counted in C: this runs on every search
        out[name] = {
            "counts": [
                {"value": v, "count": n} for v, n in sorted(counts.items(), key=lambda vn: (-vn[1], vn[0]))[:top]
            ],
            "missing": sum(not v for v in values),
            "distinct": len(counts),
        }
    return out


def facet_values(key: str, this_year: int) -> Callable[[dict], Iterable[str]]:
    """How to read a record's values of one facet's queryable, as `properties` gives them (without building them
    all for every record)."""
    if key == "decade":
        return lambda record: decades(record, this_year)
    if key in ("provider", "keywords"):
        name = BACKENDS if key == "provider" else key
        return lambda record: record.get(name) or ()
    return lambda record: (record.get("summaries") or {}).get(key) or ()


def select_fields(record: dict, include: list[str], exclude: list[str]) -> dict:
    """STAC `fields` on a collection: top-level keys (id, type, links always kept)."""
    keep = {"id", "type", "stac_version", "links"}
    if include:
        record = {k: v for k, v in record.items() if k in set(include) | keep}
    return {k: v for k, v in record.items() if k not in set(exclude) - keep}
