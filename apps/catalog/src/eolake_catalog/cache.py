"""Search answers kept by normalised query, each valid while the collections it read are unchanged.

A repeated search costs pgstac its whole query (a CQL2 translation, a partition plan, the rows, their hydration):
tens of milliseconds at 100k items. Here it costs one small query instead: the *stamp* of the collections the
search reads. The stamp changes with every committed write to them, whoever writes (the catalog's transactions,
`eolake ingest`, pypgstac, another replica): it is made of each collection's write counter, which triggers move in
the writing transaction (eolake_catalog.schema), and of the transaction id (`xmin`) of the collection's own row,
which changes when the collection is updated, deleted or created again. A search reads its stamp before looking in
the cache, so a write committed before the request is always seen.

An answer is kept from the second time its query is asked: most queries are asked once (a user pans the map), and
for those even the stamp's round trip would be spent for nothing. The keys seen once are remembered (four times as
many as the answers kept).

The key is the search as stac-fastapi parsed it (its JSON, so the order of keys or parameters sent does not matter
for POST) and the request URL (the answer's links are built from it).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import orjson

STAMP = """
SELECT md5(coalesce(string_agg(c.id || '@' || c.xmin::text || ':' || coalesce(w.writes, 0), ',' ORDER BY c.id), ''))
FROM pgstac.collections c LEFT JOIN eolake_catalog.collection_writes w ON w.collection = c.id
WHERE $1::text[] IS NULL OR c.id = ANY($1::text[])
"""


class SearchCache:
    """A bounded LRU of answers, each with the stamp of the collections it read: at most `entries` answers and
    `max_bytes` of them (as JSON); an answer above an eighth of that (a page of a thousand items) is not kept."""

    def __init__(self, entries: int, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._answers: OrderedDict[tuple[Any, ...], tuple[str, dict[str, Any], int]] = OrderedDict()
        self._seen: OrderedDict[tuple[Any, ...], None] = OrderedDict()

    def asked_before(self, key: tuple[Any, ...]) -> bool:
        """Whether this query was asked before (its answer may then be kept); remembers it otherwise."""
        if key in self._answers or key in self._seen:
            return True
        if self.entries > 0:
            self._seen[key] = None
            while len(self._seen) > 4 * self.entries:
                self._seen.popitem(last=False)
        return False

    async def stamp(self, conn: Any, collections: list[str] | None) -> str:
        return str(await conn.fetchval(STAMP, collections or None))

    def get(self, key: tuple[Any, ...], stamp: str) -> dict[str, Any] | None:
        found = self._answers.get(key)
        if found is None or found[0] != stamp:
            return None
        self._answers.move_to_end(key)
        return _copy(found[1])

    def put(self, key: tuple[Any, ...], stamp: str, answer: dict[str, Any]) -> None:
        size = len(orjson.dumps(answer, default=str))
        if self.entries <= 0 or size > self.max_bytes // 8:
            return
        self._drop(key)
        self._answers[key] = (stamp, _copy(answer), size)
        self.bytes += size
        while len(self._answers) > self.entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._answers)))

    def _drop(self, key: tuple[Any, ...]) -> None:
        if key in self._answers:
            self.bytes -= self._answers.pop(key)[2]


def _copy(answer: dict[str, Any]) -> dict[str, Any]:
    """What callers may change (stac-fastapi replaces `links`, or a feature's) without touching the kept answer."""
    return {
        **answer,
        "links": copy.deepcopy(answer.get("links", [])),
        "features": [dict(feature) for feature in answer.get("features", [])],
    }
