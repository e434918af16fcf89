"""The orders' core: what an order holds, quotas, retrievals of offline items, and the documents the API answers.
No web framework here: its dependencies (a connection pool, the catalog, a job queue) are given to `Orders`, and
what it refuses it raises as `Refused`."""

from __future__ import annotations

import base64
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool
from pydantic import BaseModel, ConfigDict, Field, model_validator

from eolake_downloads import metrics, tiers, transitions
from eolake_downloads.catalog import Catalog
from eolake_downloads.errors import Refused
from eolake_downloads.settings import DownloadsSettings
from eolake_downloads.sources import SourceError, resolve, restored_location
from eolake_kit.ratelimit import QuotaExceeded
from eolake_kit.refs import StacId

log = logging.getLogger("eolake.downloads")
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
FINAL_FILE_STATES = ("ready", "failed", "canceled", "expired")


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
    provider: str | None = Field(
        None,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
        description=(
            "fetch from this provider only (`local`: the assets' own hrefs, or an alternate's name); None: the "
            "collection's providers by priority, each failing one giving way to the next"
        ),
    )

    @model_validator(mode="after")
    def something(self) -> OrderRequest:
        if not self.items and self.search is None:
            raise ValueError("give items or a search")
        return self


class RetrieveRequest(BaseModel):
    """The body of an offline item's `retrieve` link."""

    model_config = ConfigDict(extra="forbid")
    collection: StacId
    id: StacId


def file_name(item: str, asset: str, href: str) -> str:
    suffix = Path(href.split("?")[0]).suffix[:10]
    return (SAFE_NAME.sub("_", f"{item}-{asset}")[:200] + SAFE_NAME.sub("", suffix)).lstrip(".") or "file"


def data_assets(item: dict[str, Any], keys: list[str] | None) -> list[tuple[str, dict[str, Any]]]:
    assets = item.get("assets") or {}
    if keys is not None:
        missing = [k for k in keys if k not in assets]
        if missing:
            raise Refused(400, f"item {item.get('id')!r} has no asset {', '.join(map(repr, missing))}")
        return [(k, assets[k]) for k in keys]
    data = [(k, a) for k, a in assets.items() if "data" in (a.get("roles") or [])]
    return data or list(assets.items())


def unique_names(files: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for f in files:
        n = seen.get(f["name"], 0)
        seen[f["name"]] = n + 1
        if n:
            stem, dot, ext = f["name"].rpartition(".")
            f["name"] = f"{stem}-{n}.{ext}" if dot else f"{f['name']}-{n}"


def file_doc(f: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        "id": str(f["id"]),
        "collection": f["collection"],
        "item": f["item"],
        "asset": f["asset"],
        "name": f["name"],
        "state": f["state"],
        "reason": f["reason"],
        "size": f["size"] or f["expected_size"],
        "checksum": f["checksum"] or f["expected_checksum"],
        "type": f["media_type"],
        "expires": f["expires_at"].isoformat() if f["expires_at"] else None,
        "provider": f["provider"],
        "fallbacks": f["fallbacks"] or [],
        "href": f"{base}/orders/{f['order_id']}/files/{f['id']}" if f["state"] == "ready" else None,
    }


def order_doc(order: dict[str, Any], files: list[dict[str, Any]], base: str) -> dict[str, Any]:
    ready = [f for f in files if f["state"] == "ready"]
    doc = {
        "id": str(order["id"]),
        "kind": order["kind"],
        "status": order["status"],
        "created": order["created"].isoformat(),
        "updated": order["updated"].isoformat(),
        "finished": order["finished"].isoformat() if order["finished"] else None,
        "reason": order["reason"],
        "progress": {
            "files": len(files),
            "done": sum(1 for f in files if f["state"] in FINAL_FILE_STATES),
            "ready": len(ready),
            "bytes": sum(f["size"] or 0 for f in ready),
        },
        "providers": sorted({f["provider"] for f in files if f["provider"]}),
        "fallbacks": [{"file": str(f["id"]), **fb} for f in files for fb in f["fallbacks"] or []],
        "files": [file_doc(f, base) for f in files],
        "links": [{"rel": "self", "href": f"{base}/orders/{order['id']}", "type": "application/json"}],
    }
    if order["target_item"]:
        doc["item"] = {"collection": order["target_collection"], "id": order["target_item"]}
    return doc


def page_token(created: datetime, order_id: Any) -> str:
    return base64.urlsafe_b64encode(f"{created.isoformat()}|{order_id}".encode()).decode()


def read_page_token(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, oid = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(oid)
    except ValueError:
        raise Refused(400, "invalid pagination token") from None


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Refused(404, f"no such {what}") from None


class Orders:
    """Orders of one platform: `pool` (async, search_path on the downloads schema), the `catalog` items are read
    in, `queue` (file ids → their staging jobs)."""

    def __init__(
        self,
        settings: DownloadsSettings,
        pool: psycopg_pool.AsyncConnectionPool,
        catalog: Catalog,
        queue: Callable[[list[str]], Awaitable[None]],
    ):
        self.settings, self.pool, self.catalog, self.queue = settings, pool, catalog, queue
        self.base = settings.service_url

    # ------------------------------------------------------------------ placing

    async def place(self, owner: str, request: OrderRequest) -> dict[str, Any]:
        items = [(await self.catalog.item(ref.collection, ref.id), ref.assets) for ref in request.items]
        if request.search is not None:
            items += [(it, request.assets) for it in await self.catalog.search(request.search, self.settings.max_items)]
        offline = [f"{it.get('collection')}/{it.get('id')}" for it, _ in items if tiers.is_offline(it)]
        if offline:
            raise Refused(
                409,
                f"offline, retrieve first (POST each item's 'retrieve' link): {', '.join(offline[:10])}",
                offline=offline,
            )
        files = [f for item, keys in items for f in self._files(item, keys, request.provider)]
        return await self._save(owner, request.model_dump(mode="json", exclude_none=True), files)

    async def retrieve(self, owner: str, request: RetrieveRequest) -> dict[str, Any]:
        """An order staging an offline item's assets from the slow tier back online; one at a time per item."""
        item = await self.catalog.item(request.collection, request.id)
        if not tiers.is_offline(item):
            raise Refused(409, f"item {request.collection}/{request.id} is not offline: order it (POST /orders)")
        files = self._files(item, None, None, restore=True)
        try:
            return await self._save(owner, request.model_dump(mode="json"), files, (request.collection, request.id))
        except psycopg.errors.UniqueViolation:
            existing = await self._open_retrieval(request.collection, request.id)
            raise Refused(
                409,
                f"item {request.collection}/{request.id} is being retrieved already (order "
                f"{existing}): follow that order",
                order=existing,
                headers={"Location": f"{self.base}/orders/{existing}"},
            ) from None

    def _files(
        self, item: dict[str, Any], keys: list[str] | None, provider: str | None, restore: bool = False
    ) -> list[dict[str, Any]]:
        collection, item_id = item.get("collection") or "", item.get("id") or ""
        files = []
        for key, asset in data_assets(item, keys):
            try:
                sources = tiers.ranked_sources(asset, self.settings.priority(collection), provider)
                resolved = [resolve(s["href"], self.settings) for s in sources]
            except (SourceError, tiers.NoSuchProvider) as e:
                raise Refused(400, f"asset {item_id}/{key}: {e}") from None
            files.append(
                {
                    "collection": collection,
                    "item": item_id,
                    "asset": key,
                    "href": sources[0]["href"],
                    "sources": sources,
                    "name": file_name(item_id, key, sources[0]["href"]),
                    "media_type": asset.get("type"),
                    "checksum": asset.get("file:checksum"),
                    "size": asset.get("file:size") if isinstance(asset.get("file:size"), int) else None,
                    "restore_to": self._restore_to(resolved, item_id, key) if restore else None,
                }
            )
        return files

    def _restore_to(self, sources: list[Any], item_id: str, key: str) -> str:
        """Where the retrieved file goes online: its offline copy's place (a mirror may still deliver it first)."""
        kept = next((s for s in sources if s.kind == "tier"), None)
        if kept is None:
            raise Refused(409, f"asset {item_id}/{key} is not in the offline tier: nothing to retrieve")
        return str(restored_location(kept, self.settings))

    async def _save(
        self, owner: str, request: dict[str, Any], files: list[dict[str, Any]], target: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        if not files:
            raise Refused(400, "the order has no files: no item or asset matched")
        if len(files) > self.settings.max_items:
            raise Refused(400, f"an order holds at most {self.settings.max_items} files, this one {len(files)}")
        unique_names(files)
        order_id = uuid.uuid4()
        ids = [uuid.uuid4() for _ in files]
        async with self.pool.connection() as conn, conn.transaction():
            await self._check_quota(conn, owner, sum(f["size"] or 0 for f in files))
            await transitions.place(conn, order_id, owner, request, target)
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO files (id, order_id, position, collection, item, asset, name, href, media_type, "
                    "expected_checksum, expected_size, sources, restore_to, state) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,'queued')",
                    [
                        (
                            fid,
                            order_id,
                            i,
                            f["collection"],
                            f["item"],
                            f["asset"],
                            f["name"],
                            f["href"],
                            f["media_type"],
                            f["checksum"],
                            f["size"],
                            psycopg.types.json.Jsonb(f["sources"]),
                            f["restore_to"],
                        )
                        for i, (fid, f) in enumerate(zip(ids, files))
                    ],
                )
        try:
            await self.queue([str(i) for i in ids])
        except Exception as e:  # the order is safe in the database; workers requeue files without a job
            log.warning("order %s saved, jobs not queued yet: %s", order_id, e)
        return await self.get(owner, str(order_id))

    async def _open_retrieval(self, collection: str, item_id: str) -> str | None:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT id FROM orders WHERE kind = 'retrieval' AND status = 'ordered' AND target_collection = %s "
                    "AND target_item = %s",
                    (collection, item_id),
                )
            ).fetchone()
        return str(row["id"]) if row else None

    async def _check_quota(self, conn: psycopg.AsyncConnection[Any], owner: str, new_bytes: int) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('eolake_downloads.quota:' || %s))", (owner,))
        open_orders = await (
            await conn.execute(
                "SELECT count(*) AS n FROM orders WHERE owner = %s AND status = ANY(%s)",
                (owner, list(transitions.OPEN)),
            )
        ).fetchone()
        if open_orders["n"] >= self.settings.quota_concurrent_orders:
            retry = int(max(self.settings.maintenance_interval, 10))
            raise QuotaExceeded(
                "concurrent-orders",
                f"quota 'concurrent orders' exceeded: {open_orders['n']} of {self.settings.quota_concurrent_orders} "
                "orders in progress; wait for one to finish or cancel one",
                datetime.now(UTC) + timedelta(seconds=retry),
                retry,
            )
        period = timedelta(seconds=self.settings.quota_period_seconds)
        rows = await (
            await conn.execute(
                "SELECT o.created, coalesce(sum(coalesce(f.size, f.expected_size, 0)), 0) AS bytes FROM orders o "
                "JOIN files f ON f.order_id = o.id WHERE o.owner = %s AND o.created > now() - %s "
                "AND f.state <> 'canceled' GROUP BY o.id ORDER BY o.created",
                (owner, period),
            )
        ).fetchall()
        used = sum(int(r["bytes"]) for r in rows)
        if used + new_bytes > self.settings.quota_bytes:
            self._bytes_exceeded(rows, used, new_bytes, period)

    def _bytes_exceeded(self, rows: list[dict[str, Any]], used: int, new_bytes: int, period: timedelta) -> None:
        # The window slides: room comes back when the oldest orders leave it.
        need, reset = used + new_bytes - self.settings.quota_bytes, None
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
            f"{self.settings.quota_period_seconds} s, this order adds {new_bytes}, the limit is "
            f"{self.settings.quota_bytes}",
            reset,
            retry,
        )

    # ------------------------------------------------------------------ reading and canceling

    async def get(self, owner: str, order_id: str) -> dict[str, Any]:
        order_id = _uuid(order_id, "order")
        async with self.pool.connection() as conn:
            order = await (
                await conn.execute("SELECT * FROM orders WHERE id = %s AND owner = %s", (order_id, owner))
            ).fetchone()
            if not order:
                raise Refused(404, "no such order")
            files = await (
                await conn.execute("SELECT * FROM files WHERE order_id = %s ORDER BY position", (order_id,))
            ).fetchall()
        return order_doc(order, files, self.base)

    async def page(self, owner: str, limit: int, token: str | None) -> dict[str, Any]:
        query = "SELECT * FROM orders WHERE owner = %s"
        params: list[object] = [owner]
        if token:
            query += " AND (created, id) < (%s, %s)"
            params += list(read_page_token(token))
        async with self.pool.connection() as conn:
            orders = await (
                await conn.execute(query + " ORDER BY created DESC, id DESC LIMIT %s", [*params, limit + 1])
            ).fetchall()
            page = orders[:limit]
            files = await (
                await conn.execute(
                    "SELECT * FROM files WHERE order_id = ANY(%s) ORDER BY position", ([o["id"] for o in page],)
                )
            ).fetchall()
        by_order: dict[Any, list[Any]] = {}
        for f in files:
            by_order.setdefault(f["order_id"], []).append(f)
        links = []
        if len(orders) > limit:
            nxt = page_token(page[-1]["created"], page[-1]["id"])
            links.append({"rel": "next", "href": f"{self.base}/orders?limit={limit}&token={nxt}"})
        return {"orders": [order_doc(o, by_order.get(o["id"], []), self.base) for o in page], "links": links}

    async def cancel(self, owner: str, order_id: str) -> dict[str, Any]:
        await self.get(owner, order_id)
        async with self.pool.connection() as conn, conn.transaction():
            change = await transitions.finish(conn, order_id, "canceled", "canceled by the user")
            if change:
                await conn.execute(
                    "UPDATE files SET state = 'canceled', updated = now() "
                    "WHERE order_id = %s AND state IN ('queued', 'staging')",
                    (order_id,),
                )
        if change:
            metrics.JOBS.labels(metrics.SERVICE, "cancelled").inc()
        return await self.get(owner, order_id)

    async def ready_file(self, owner: str, order_id: str, file_id: str) -> dict[str, Any]:
        """A staged file of the caller's order (its row); Refused while it is not ready or after it expired."""
        await self.get(owner, order_id)
        file_id = _uuid(file_id, "file")
        async with self.pool.connection() as conn:
            f: dict[str, Any] | None = await (
                await conn.execute("SELECT * FROM files WHERE id = %s AND order_id = %s", (file_id, order_id))
            ).fetchone()
        if not f:
            raise Refused(404, "no such file")
        if f["state"] == "expired":
            raise Refused(410, "this file expired and was removed: order it again")
        if f["state"] != "ready":
            raise Refused(409, f"file not ready (state {f['state']}" + (f": {f['reason']})" if f["reason"] else ")"))
        return f

    async def check_database(self) -> None:
        async with self.pool.connection(timeout=self.settings.readiness_timeout) as conn:
            await conn.execute("SELECT 1 FROM orders LIMIT 1")
