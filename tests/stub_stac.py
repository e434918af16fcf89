"""A small STAC API over an ndjson file of items, answering each search after a chosen delay: a search provider of
its own (own process, no database) for the federation tests and bench (servers.stub_stac).

It answers item search (POST and GET: collections, ids, bbox, datetime, a CQL2-JSON filter of `and`/`=` over
properties, limit, token) in pgstac's default order (datetime then id, descending), pages with an offset token, and
single items. Each search waits `median × exp(spread × z)` milliseconds first, z standard normal drawn from a hash
of the seed and the answer (the matched items and the offset), so the same query waits the same time whoever asks
and however its parameters are spelt: the delay is a property of the provider and the query, not of the caller.

    python tests/stub_stac.py ITEMS.ndjson --port 8001 [--median-ms 200] [--spread 0.1] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import statistics
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

GEOJSON = "application/geo+json"
NORMAL = statistics.NormalDist()


class BadQuery(ValueError):
    pass


def timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Holdings:
    """The items, sorted once in the answer order, each serialised once."""

    def __init__(self, items: list[dict[str, Any]]):
        items = sorted(items, key=lambda i: (i["properties"].get("datetime") or "", i["id"]), reverse=True)
        self.items = items
        self.encoded = [orjson.dumps(i) for i in items]
        self.times = [timestamp(i["properties"]["datetime"]) for i in items]
        self.by_id = {(i.get("collection"), i["id"]): n for n, i in enumerate(items)}

    def matching(self, query: dict[str, Any]) -> list[int]:
        tests = [t for t in (self._collections(query), self._ids(query), self._bbox(query), self._time(query)) if t]
        where = query.get("filter")
        if where is not None:
            tests.append(lambda n: evaluate(where, self.items[n]))
        return [n for n in range(len(self.items)) if all(test(n) for test in tests)]

    def _collections(self, query: dict[str, Any]):
        wanted = strings(query.get("collections"))
        return (lambda n: self.items[n].get("collection") in wanted) if wanted else None

    def _ids(self, query: dict[str, Any]):
        wanted = strings(query.get("ids"))
        return (lambda n: self.items[n]["id"] in wanted) if wanted else None

    def _bbox(self, query: dict[str, Any]):
        box = query.get("bbox")
        if not box:
            return None
        west, south, east, north = [float(v) for v in (box.split(",") if isinstance(box, str) else box)][:4]

        def overlaps(n: int) -> bool:
            w, s, e, no = self.items[n]["bbox"][:4]
            return w <= east and e >= west and s <= north and no >= south

        return overlaps

    def _time(self, query: dict[str, Any]):
        text = query.get("datetime")
        if not text:
            return None
        start, _, end = text.partition("/") if "/" in text else (text, "", text)
        low = timestamp(start) if start not in ("", "..") else -math.inf
        high = timestamp(end) if end not in ("", "..") else math.inf
        return lambda n: low <= self.times[n] <= high


def strings(value: Any) -> set[str]:
    if not value:
        return set()
    return set(value.split(",")) if isinstance(value, str) else set(value)


def evaluate(node: dict[str, Any], item: dict[str, Any]) -> bool:
    """A CQL2-JSON `and` of `=` comparisons between a property and a literal; BadQuery for anything else."""
    op, args = node.get("op"), node.get("args") or []
    if op == "and":
        return all(evaluate(a, item) for a in args)
    if op == "=" and len(args) == 2 and isinstance(args[0], dict) and "property" in args[0]:
        name = args[0]["property"]
        value = item.get(name) if name in ("id", "collection") else item["properties"].get(name)
        return value == args[1]
    raise BadQuery(f"this stub evaluates only `and` of `=` on properties, not {op!r}")


def delay_seconds(median_ms: float, spread: float, seed: int, key: str) -> float:
    digest = hashlib.blake2b(f"{seed}|{key}".encode(), digest_size=8).digest()
    u = (int.from_bytes(digest, "big") + 0.5) / 2**64
    return median_ms * math.exp(spread * NORMAL.inv_cdf(u)) / 1000


async def pause(request: Request, seconds: float) -> None:
    """Wait `seconds`, or less if the caller goes away (a federated search that stopped waiting for this provider
    closes the connection): no request outlives its caller, so the stub stops at once."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while (left := until - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(request.receive(), left)
        except TimeoutError:
            return
        if message["type"] == "http.disconnect":
            return


def create_app(items: list[dict[str, Any]], median_ms: float = 0, spread: float = 0, seed: int = 0) -> Starlette:
    holdings = Holdings(items)
    collection_ids = sorted({i.get("collection") for i in items if i.get("collection")})

    def json(content: Any, status: int = 200, media_type: str = "application/json") -> Response:
        return Response(orjson.dumps(content), status, media_type=media_type)

    async def answer(request: Request, query: dict[str, Any], method: str) -> Response:
        try:
            limit = max(1, min(int(query.get("limit") or 10), 10_000))
            offset = int(str(query.get("token") or "o:0").removeprefix("o:"))
            matched = holdings.matching(query)
        except (BadQuery, ValueError, TypeError, KeyError) as exc:
            return json({"code": "BadRequest", "description": str(exc)}, 400)
        page = matched[offset : offset + limit]
        # the same key as the single-item route's when the search finds one item: the same delay either way
        key = f"{offset}|{len(matched)}|{holdings.items[page[0]]['id'] if page else ''}"
        await pause(request, delay_seconds(median_ms, spread, seed, key))
        base = str(request.base_url).rstrip("/")
        links = [{"rel": "root", "href": f"{base}/", "type": "application/json"}]
        if offset + limit < len(matched):
            token = f"o:{offset + limit}"
            if method == "POST":
                links.append(
                    {"rel": "next", "href": f"{base}/search", "method": "POST", "merge": True, "body": {"token": token}}
                )
            else:
                params = {k: v for k, v in query.items() if k != "token"} | {"token": token}
                links.append({"rel": "next", "href": f"{base}/search?{urlencode(params)}", "method": "GET"})
        head = orjson.dumps(
            {"type": "FeatureCollection", "numberMatched": len(matched), "numberReturned": len(page), "links": links}
        )
        body = head[:-1] + b',"features":[' + b",".join(holdings.encoded[n] for n in page) + b"]}"
        return Response(body, media_type=GEOJSON)

    async def search(request: Request) -> Response:
        if request.method == "GET":
            return await answer(request, dict(request.query_params), "GET")
        try:
            query = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return json({"code": "BadRequest", "description": "not JSON"}, 400)
        return await answer(request, query if isinstance(query, dict) else {}, "POST")

    async def item(request: Request) -> Response:
        n = holdings.by_id.get((request.path_params["collection"], request.path_params["item"]))
        if n is None:
            return json({"code": "NotFound", "description": "no such item"}, 404)
        await pause(request, delay_seconds(median_ms, spread, seed, f"0|1|{holdings.items[n]['id']}"))
        return Response(holdings.encoded[n], media_type=GEOJSON)

    async def landing(request: Request) -> Response:
        return json({"type": "Catalog", "id": "stub", "description": "stub STAC API", "links": [], "conformsTo": []})

    async def collections(request: Request) -> Response:
        return json({"collections": [collection(c) for c in collection_ids], "links": []})

    async def one_collection(request: Request) -> Response:
        cid = request.path_params["collection"]
        return json(collection(cid)) if cid in collection_ids else json({"code": "NotFound"}, 404)

    async def queryables(request: Request) -> Response:
        return json({"type": "object", "properties": {"datetime": {"type": "string"}}})

    return Starlette(
        routes=[
            Route("/", landing),
            Route("/healthz", landing),
            Route("/conformance", landing),
            Route("/queryables", queryables),
            Route("/collections", collections),
            Route("/collections/{collection}", one_collection),
            Route("/collections/{collection}/queryables", queryables),
            Route("/collections/{collection}/items/{item}", item),
            Route("/search", search, methods=["GET", "POST"]),
        ]
    )


def collection(cid: str) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": cid,
        "title": cid,
        "description": f"{cid} (stub)",
        "license": "proprietary",
        "links": [],
        "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("items", type=Path, help="ndjson, one STAC item a line")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--median-ms", type=float, default=0, help="median delay of a search")
    p.add_argument("--spread", type=float, default=0, help="sigma of the log-normal delay (0: always the median)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    items = [orjson.loads(line) for line in args.items.read_bytes().splitlines() if line.strip()]
    app = create_app(items, args.median_ms, args.spread, args.seed)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
