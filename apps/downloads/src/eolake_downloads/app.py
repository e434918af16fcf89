"""The download service: orders (STAC order vocabulary), per-user quotas, resumable checksummed downloads."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import psycopg
import psycopg_pool
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, model_validator

from eolake_downloads import metrics
from eolake_downloads.schema import SEARCH_PATH, job_app
from eolake_downloads.settings import DownloadsSettings
from eolake_downloads.sources import SourceError, resolve
from eolake_downloads.streaming import local_body, parse_range, s3_body
from eolake_downloads.worker import defer_file
from eolake_kit import Principal, install_kit, problem, require_role
from eolake_kit.bounds import reconnecting
from eolake_kit.outbound import async_client
from eolake_kit.ratelimit import QuotaExceeded
from eolake_kit.refs import StacId, segment

log = logging.getLogger("eolake.downloads")
User = Annotated[Principal, Depends(require_role("user"))]
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
OPEN = ("orderable", "ordered")


class ItemRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    collection: StacId
    id: StacId
    assets: list[str] | None = Field(None, max_length=100, description="asset keys; None: the data assets")


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ItemRef] = Field(default_factory=list, max_length=1000)
    search: dict[str, Any] | None = Field(None, description="a STAC item search body, resolved via the catalog")
    assets: list[str] | None = Field(None, max_length=100, description="asset keys for searched items")

    @model_validator(mode="after")
    def something(self) -> OrderRequest:
        if not self.items and self.search is None:
            raise ValueError("give items or a search")
        return self


def _file_name(item: str, asset: str, href: str) -> str:
    suffix = Path(href.split("?")[0]).suffix[:10]
    return (SAFE_NAME.sub("_", f"{item}-{asset}")[:200] + SAFE_NAME.sub("", suffix)).lstrip(".") or "file"


def _data_assets(item: dict, keys: list[str] | None) -> list[tuple[str, dict]]:
    assets = item.get("assets") or {}
    if keys is not None:
        missing = [k for k in keys if k not in assets]
        if missing:
            raise HTTPException(400, f"item {item.get('id')!r} has no asset {', '.join(map(repr, missing))}")
        return [(k, assets[k]) for k in keys]
    data = [(k, a) for k, a in assets.items() if "data" in (a.get("roles") or [])]
    return data or list(assets.items())


class Catalog:
    def __init__(self, settings: DownloadsSettings):
        self.peer = settings.catalog
        self.url = self.peer.url
        self.client = async_client([self.url], timeout=settings.source_timeout)

    async def item(self, collection: str, item_id: str) -> dict:
        try:
            resp = await self.client.get(f"{self.url}/collections/{segment(collection)}/items/{segment(item_id)}")
        except httpx.TransportError as e:
            raise HTTPException(503, f"catalog unreachable: {e.__class__.__name__}") from None
        if resp.status_code == 404:
            raise HTTPException(404, f"item {collection}/{item_id} not found in the catalog")
        if resp.status_code != 200:
            raise HTTPException(502, f"catalog answered {resp.status_code} for {collection}/{item_id}")
        return resp.json()

    async def search(self, body: dict, limit: int) -> list[dict]:
        page = body.get("limit") or 100
        if not isinstance(page, int) or isinstance(page, bool) or page < 1:
            raise HTTPException(400, "search.limit must be a positive integer")
        body = {**body, "limit": min(page, 100)}
        items: list[dict] = []
        url, method = f"{self.url}/search", "POST"
        while url and len(items) < limit:
            try:
                resp = await self.client.request(method, url, json=body if method == "POST" else None)
            except httpx.TransportError as e:
                raise HTTPException(503, f"catalog unreachable: {e.__class__.__name__}") from None
            if resp.status_code == 400:
                raise HTTPException(400, f"catalog rejected the search: {resp.json().get('detail', resp.text)}")
            if resp.status_code != 200:
                raise HTTPException(502, f"catalog answered {resp.status_code} to the search")
            page = resp.json()
            items += page.get("features", [])
            nxt = next((link for link in page.get("links", []) if link.get("rel") == "next"), None)
            url = None
            if nxt:
                url, method = self.peer.internal(str(nxt.get("href"))), nxt.get("method", "GET")
                if method == "POST":
                    body = nxt.get("body") or body
        if len(items) > limit:
            raise HTTPException(400, f"the search matches more than {limit} items: narrow it")
        return items


def _order_doc(order: dict, files: list[dict], base: str) -> dict:
    done = sum(1 for f in files if f["state"] in ("ready", "failed", "canceled", "expired"))
    return {
        "id": str(order["id"]),
        "status": order["status"],
        "created": order["created"].isoformat(),
        "updated": order["updated"].isoformat(),
        "finished": order["finished"].isoformat() if order["finished"] else None,
        "reason": order["reason"],
        "progress": {"files": len(files), "done": done,
                     "ready": sum(1 for f in files if f["state"] == "ready"),
                     "bytes": sum(f["size"] or 0 for f in files if f["state"] == "ready")},
        "files": [{
            "id": str(f["id"]), "collection": f["collection"], "item": f["item"], "asset": f["asset"],
            "name": f["name"], "state": f["state"], "reason": f["reason"], "size": f["size"] or f["expected_size"],
            "checksum": f["checksum"] or f["expected_checksum"], "type": f["media_type"],
            "expires": f["expires_at"].isoformat() if f["expires_at"] else None,
            "href": f"{base}/orders/{order['id']}/files/{f['id']}" if f["state"] == "ready" else None,
        } for f in files],
        "links": [{"rel": "self", "href": f"{base}/orders/{order['id']}", "type": "application/json"}],
    }


def create_app(settings: DownloadsSettings | None = None) -> FastAPI:
    settings = settings or DownloadsSettings()
    pool = psycopg_pool.AsyncConnectionPool(settings.dsn, min_size=0, max_size=max(2, settings.pool_size - 1),
                                            kwargs={"options": f"{SEARCH_PATH} {settings.postgres_options()}",
                                                    "row_factory": dict_row},
                                            open=False, timeout=10, **reconnecting(psycopg_pool.AsyncConnectionPool))
    jobs = job_app(settings.dsn, pool_size=2, options=settings.postgres_options())
    catalog = Catalog(settings)
    base = settings.service_url

    async def queue_depth_loop() -> None:
        while True:
            try:
                async with pool.connection() as conn:
                    row = await (await conn.execute(
                        "SELECT count(*) AS n FROM files WHERE state IN ('queued', 'staging')")).fetchone()
                metrics.QUEUE_DEPTH.labels(metrics.SERVICE).set(row["n"])
            except Exception as e:
                log.debug("queue depth not refreshed: %s", e)
            await asyncio.sleep(settings.maintenance_interval)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await pool.open(wait=False)
        opened = False
        try:
            await jobs.open_async()
            opened = True
        except Exception as e:  # Postgres down at start: readiness says so; deferring reopens below
            log.warning("job queue not reachable yet: %s", e)
        app.state.jobs_open = opened
        task = asyncio.create_task(queue_depth_loop())
        yield
        task.cancel()
        await catalog.client.aclose()
        if app.state.jobs_open:
            await jobs.close_async()
        await pool.close()

    app = FastAPI(title="eolake downloads", version="0.1.0", lifespan=lifespan,
                  description="Orders for catalog items, staged by workers; resumable, checksummed downloads.")

    async def defer(file_ids: list[str]) -> None:
        if not app.state.jobs_open:
            await jobs.open_async()
            app.state.jobs_open = True
        for fid in file_ids:
            await defer_file(jobs, fid)

    async def check_quota(conn, owner: str, new_bytes: int) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('eolake_downloads.quota:' || %s))", (owner,))
        open_orders = await (await conn.execute(
            "SELECT count(*) AS n FROM orders WHERE owner = %s AND status IN ('orderable', 'ordered')",
            (owner,))).fetchone()
        if open_orders["n"] >= settings.quota_concurrent_orders:
            retry = int(max(settings.maintenance_interval, 10))
            raise QuotaExceeded(
                "concurrent-orders",
                f"quota 'concurrent orders' exceeded: {open_orders['n']} of {settings.quota_concurrent_orders} "
                "orders in progress; wait for one to finish or cancel one",
                datetime.now(UTC) + timedelta(seconds=retry), retry)
        period = timedelta(seconds=settings.quota_period_seconds)
        rows = await (await conn.execute(
            "SELECT o.created, coalesce(sum(coalesce(f.size, f.expected_size, 0)), 0) AS bytes FROM orders o "
            "JOIN files f ON f.order_id = o.id WHERE o.owner = %s AND o.created > now() - %s "
            "AND f.state <> 'canceled' GROUP BY o.id ORDER BY o.created", (owner, period))).fetchall()
        used = sum(int(r["bytes"]) for r in rows)
        if used + new_bytes > settings.quota_bytes:
            # The window slides: room comes back when the oldest orders leave it.
            need, reset = used + new_bytes - settings.quota_bytes, None
            for r in rows:
                need -= int(r["bytes"])
                if need <= 0:
                    reset = r["created"] + period
                    break
            reset = reset or datetime.now(UTC) + period
            retry = max(1, int((reset - datetime.now(UTC)).total_seconds()) + 1)
            raise QuotaExceeded(
                "bytes-per-period",
                f"quota 'bytes per period' exceeded: {used} bytes ordered in the last "
                f"{settings.quota_period_seconds} s, this order adds {new_bytes}, the limit is "
                f"{settings.quota_bytes}", reset, retry)

    @app.post("/orders", status_code=201, summary="Order items or the result of a search", responses={
        404: {"description": "an ordered item is not in the catalog"},
        429: {"description": "a quota of the caller is exceeded (Retry-After says when to retry)"},
        502: {"description": "the catalog answered something unexpected"}})
    async def create_order(body: OrderRequest, who: User, request: Request) -> Response:
        items: list[tuple[dict, list[str] | None]] = []
        for ref in body.items:
            items.append((await catalog.item(ref.collection, ref.id), ref.assets))
        if body.search is not None:
            items += [(it, body.assets) for it in await catalog.search(body.search, settings.max_items)]
        files = []
        for item, keys in items:
            for key, asset in _data_assets(item, keys):
                href = asset.get("href") or ""
                try:
                    resolve(href, settings)
                except SourceError as e:
                    raise HTTPException(400, f"asset {item.get('id')}/{key}: {e}") from None
                files.append({"collection": item.get("collection") or "", "item": item.get("id") or "",
                              "asset": key, "href": href, "name": _file_name(item.get("id", ""), key, href),
                              "media_type": asset.get("type"), "checksum": asset.get("file:checksum"),
                              "size": asset.get("file:size") if isinstance(asset.get("file:size"), int) else None})
        if not files:
            raise HTTPException(400, "the order has no files: no item or asset matched")
        if len(files) > settings.max_items:
            raise HTTPException(400, f"an order holds at most {settings.max_items} files, this one {len(files)}")
        seen: dict[str, int] = {}
        for f in files:  # unique names inside an order
            n = seen.get(f["name"], 0)
            seen[f["name"]] = n + 1
            if n:
                stem, dot, ext = f["name"].rpartition(".")
                f["name"] = f"{stem}-{n}.{ext}" if dot else f"{f['name']}-{n}"
        order_id = uuid.uuid4()
        async with pool.connection() as conn, conn.transaction():
            await check_quota(conn, who.subject, sum(f["size"] or 0 for f in files))
            await conn.execute("INSERT INTO orders (id, owner, status, request) VALUES (%s, %s, 'ordered', %s)",
                               (order_id, who.subject, Jsonb(body.model_dump(mode="json", exclude_none=True))))
            ids = [uuid.uuid4() for _ in files]
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO files (id, order_id, position, collection, item, asset, name, href, media_type, "
                    "expected_checksum, expected_size, state) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,'queued')",
                    [(fid, order_id, i, f["collection"], f["item"], f["asset"], f["name"], f["href"],
                      f["media_type"], f["checksum"], f["size"]) for i, (fid, f) in enumerate(zip(ids, files))])
        try:
            await defer([str(i) for i in ids])
        except Exception as e:  # the order is safe in the database; workers requeue files without a job
            log.warning("order %s saved, jobs not queued yet: %s", order_id, e)
        doc = await load_order(str(order_id), who)
        return Response(json.dumps(doc), status_code=201, media_type="application/json",
                        headers={"Location": f"{base}/orders/{order_id}"})

    async def load_order(order_id: str, who: Principal) -> dict:
        try:
            uuid.UUID(order_id)
        except ValueError:
            raise HTTPException(404, "no such order") from None
        async with pool.connection() as conn:
            order = await (await conn.execute("SELECT * FROM orders WHERE id = %s AND owner = %s",
                                              (order_id, who.subject))).fetchone()
            if not order:
                raise HTTPException(404, "no such order")
            files = await (await conn.execute("SELECT * FROM files WHERE order_id = %s ORDER BY position",
                                              (order_id,))).fetchall()
        return _order_doc(order, files, base)

    @app.get("/orders/{order_id}", summary="An order: status, progress and files")
    async def get_order(order_id: str, who: User) -> dict:
        return await load_order(order_id, who)

    @app.get("/orders", summary="My orders, newest first")
    async def list_orders(who: User, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                          token: Annotated[str | None, Query(max_length=200)] = None) -> dict:
        after = None
        if token:
            try:
                created, oid = base64.urlsafe_b64decode(token.encode()).decode().split("|")
                after = (datetime.fromisoformat(created), uuid.UUID(oid))
            except ValueError:
                raise HTTPException(400, "invalid pagination token") from None
        query = "SELECT * FROM orders WHERE owner = %s"
        params: list[Any] = [who.subject]
        if after:
            query += " AND (created, id) < (%s, %s)"
            params += list(after)
        query += " ORDER BY created DESC, id DESC LIMIT %s"
        async with pool.connection() as conn:
            orders = await (await conn.execute(query, [*params, limit + 1])).fetchall()
            page = orders[:limit]
            files = await (await conn.execute(
                "SELECT * FROM files WHERE order_id = ANY(%s) ORDER BY position",
                ([o["id"] for o in page],))).fetchall()
        by_order: dict[Any, list] = {}
        for f in files:
            by_order.setdefault(f["order_id"], []).append(f)
        links = []
        if len(orders) > limit:
            last = page[-1]
            nxt = base64.urlsafe_b64encode(f"{last['created'].isoformat()}|{last['id']}".encode()).decode()
            links.append({"rel": "next", "href": f"{base}/orders?limit={limit}&token={nxt}"})
        return {"orders": [_order_doc(o, by_order.get(o["id"], []), base) for o in page], "links": links}

    async def cancel(order_id: str, who: Principal) -> dict:
        await load_order(order_id, who)
        async with pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(
                "UPDATE orders SET status = 'canceled', finished = now(), updated = now(), reason = 'canceled by "
                "the user' WHERE id = %s AND owner = %s AND status IN ('orderable', 'ordered') RETURNING id",
                (order_id, who.subject))).fetchone()
            if row:
                await conn.execute("UPDATE files SET state = 'canceled', updated = now() "
                                   "WHERE order_id = %s AND state IN ('queued', 'staging')", (order_id,))
        if row:
            metrics.JOBS.labels(metrics.SERVICE, "cancelled").inc()
        return await load_order(order_id, who)

    @app.post("/orders/{order_id}/cancel", summary="Cancel an order in progress")
    async def cancel_post(order_id: str, who: User) -> dict:
        return await cancel(order_id, who)

    @app.delete("/orders/{order_id}", summary="Cancel an order in progress")
    async def cancel_delete(order_id: str, who: User) -> dict:
        return await cancel(order_id, who)

    file_responses = {206: {"description": "the requested range"}, 304: {"description": "not modified"},
                      409: {"description": "the file is not staged yet"}, 410: {"description": "the file expired"},
                      416: {"description": "the range is outside the file"}}

    # Two routes rather than one for both methods: each gets its own OpenAPI operation id.
    @app.get("/orders/{order_id}/files/{file_id}", summary="Download a staged file (HTTP Range supported)",
             responses=file_responses)
    @app.head("/orders/{order_id}/files/{file_id}", summary="A staged file's size, checksum and validators",
              responses=file_responses)
    async def download(order_id: str, file_id: str, who: User, request: Request) -> Response:
        await load_order(order_id, who)
        try:
            uuid.UUID(file_id)
        except ValueError:
            raise HTTPException(404, "no such file") from None
        async with pool.connection() as conn:
            f = await (await conn.execute("SELECT * FROM files WHERE id = %s AND order_id = %s",
                                          (file_id, order_id))).fetchone()
        if not f:
            raise HTTPException(404, "no such file")
        if f["state"] == "expired":
            raise HTTPException(410, "this file expired and was removed: order it again")
        if f["state"] != "ready":
            raise HTTPException(409, f"file not ready (state {f['state']}"
                                     + (f": {f['reason']})" if f["reason"] else ")"))
        size, sha_hex = int(f["size"]), f["checksum"][4:]
        etag = f'"{sha_hex}"'
        headers = {
            "Accept-Ranges": "bytes", "ETag": etag,
            "Last-Modified": format_datetime(f["staged_at"].astimezone(UTC), usegmt=True),
            "Content-Disposition": f'attachment; filename="{f["name"]}"',
            "Digest": "sha-256=" + base64.b64encode(bytes.fromhex(sha_hex)).decode(),
            "Repr-Digest": "sha-256=:" + base64.b64encode(bytes.fromhex(sha_hex)).decode() + ":",
            "X-Checksum-SHA256": sha_hex,
            "Cache-Control": "private, no-transform",
        }
        media = f["media_type"] or "application/octet-stream"
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        wanted = parse_range(request.headers.get("range"), size)
        if_range = request.headers.get("if-range")
        if if_range and if_range != etag and if_range != headers["Last-Modified"]:
            wanted = None  # the file changed since the client's partial copy: send it whole
        if wanted == "bad":
            return problem(416, f"range not satisfiable for a file of {size} bytes",
                           headers={"Content-Range": f"bytes */{size}", **headers})
        start, end = wanted if wanted else (0, size - 1)
        length = end - start + 1 if size else 0
        headers["Content-Length"] = str(length)
        status = 200
        if wanted:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type=media)
        body = local_body(f["location"], start, length) if settings.storage_kind == "local" \
            else s3_body(settings, f["location"], start, end, length)
        return StreamingResponse(body, status_code=status, headers=headers, media_type=media)

    async def database() -> None:
        async with pool.connection(timeout=settings.readiness_timeout) as conn:
            await conn.execute("SELECT 1 FROM orders LIMIT 1")

    install_kit(app, settings, checks={"database": database},  # it answers QuotaExceeded too
                status_codes={psycopg.OperationalError: 503, psycopg_pool.PoolTimeout: 503})
    return app
