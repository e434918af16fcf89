"""The catalog: stac-fastapi-pgstac with the read extensions, admin-only transactions, behind the service kit."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import attr
import jsonpatch
import orjson
import stac_pydantic
from asyncpg import exceptions as pg_errors
from fastapi import Depends, FastAPI, HTTPException, Request
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from stac_fastapi.api.errors import DEFAULT_STATUS_CODES
from stac_fastapi.extensions import (
    BulkTransactionExtension,
    ItemCollectionFilterExtension,
    SearchFilterExtension,
    TransactionExtension,
)
from stac_fastapi.pgstac.app import instantiate_api
from stac_fastapi.pgstac.config import PostgresSettings, Settings
from stac_fastapi.pgstac.core import CoreCrudClient
from stac_fastapi.pgstac.db import close_db_connection, con_init, connect_to_db
from stac_fastapi.pgstac.models.extensions import Extensions
from stac_fastapi.pgstac.transactions import BulkTransactionsClient, TransactionsClient
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

from eolake_catalog.cache import SearchCache
from eolake_catalog.etag import EtagMiddleware
from eolake_catalog.inputs import (
    SearchBodyMiddleware,
    checked,
    fields_selection,
    free_text,
    patched_document,
    query_params_as_filter,
    writable_collection,
    writable_geometry,
)
from eolake_catalog.queryables import DependentQueryables
from eolake_catalog.reads import ACQUIRE_SECONDS, Connections
from eolake_catalog.schema import index_summaries
from eolake_catalog.settings import CatalogSettings
from eolake_kit import __version__, install_kit, require_role
from eolake_kit.replicas import PRIMARY_POSITION, REPLAYED, ReplicaLag
from eolake_kit.stac import select_fields

log = logging.getLogger("eolake_catalog")
LANDING_ID = "eolake-catalog"
GEOJSON = "application/geo+json"
ESTIMATED = "eolake:numberMatchedEstimated"  # beside numberMatched: true when it is the planner's estimate
PLAN = "EXPLAIN (FORMAT JSON) SELECT 1 FROM pgstac.items WHERE {}"
CONFLICT = {409: "a document with this id exists already"}
RESPONSES = {  # besides the kit's errors: stac-fastapi's ConflictError and ForeignKeyError
    "POST /collections": CONFLICT,
    "POST /collections/{collection_id}/items": {**CONFLICT, 424: "the collection does not exist"},
    "POST /collections/{collection_id}/bulk_items": {**CONFLICT, 424: "the collection does not exist"},
    "PUT /collections/{collection_id}/items/{item_id}": {424: "the collection does not exist"},
}
WRITE_ROUTES = [
    {"path": "/collections", "method": "POST"},
    {"path": "/collections/{collection_id}", "method": "PUT"},
    {"path": "/collections/{collection_id}", "method": "PATCH"},
    {"path": "/collections/{collection_id}", "method": "DELETE"},
    {"path": "/collections/{collection_id}/items", "method": "POST"},
    {"path": "/collections/{collection_id}/items/{item_id}", "method": "PUT"},
    {"path": "/collections/{collection_id}/items/{item_id}", "method": "PATCH"},
    {"path": "/collections/{collection_id}/items/{item_id}", "method": "DELETE"},
    {"path": "/collections/{collection_id}/bulk_items", "method": "POST"},
]


@attr.s
class CatalogClient(CoreCrudClient):
    """stac-fastapi-pgstac's client with the client's input checked first (eolake_catalog.inputs)."""

    landing_page_id: str = attr.ib(default=LANDING_ID)

    async def all_collections(self, request: Request, **kwargs: Any):
        return await super().all_collections(request, **checked(kwargs))

    async def item_collection(self, collection_id: str, request: Request, **kwargs: Any):
        params = query_params_as_filter(checked(kwargs))
        return geojson(await super().item_collection(collection_id, request, **params))

    async def get_search(self, request: Request, **kwargs: Any):
        return geojson(await super().get_search(request, **query_params_as_filter(checked(kwargs))))

    async def post_search(self, search_request: Any, request: Request, **kwargs: Any):
        if "fields" in search_request.model_fields_set and search_request.fields is None:
            raise HTTPException(400, "fields must be an object with include and exclude lists")
        if getattr(search_request, "q", None):
            search_request = search_request.model_copy(update={"q": free_text(search_request.q)})
        return geojson(await super().post_search(search_request, request, **kwargs))

    async def _search_base(self, search_request: Any, request: Request):
        """Every search, item listing and item read; `fields` is applied to the answer here (eolake_kit.stac, as the
        federated search does): pgstac's selection differs from what STAC clients expect of include and exclude."""
        selection = fields_selection(search_request)
        if selection is not None:
            search_request = search_request.model_copy(update={"fields": None})
        answer = await self._cached(search_request, request)
        if selection is None:
            return answer
        return {**answer, "features": [select_fields(f, selection) for f in answer.get("features", [])]}

    async def _cached(self, search_request: Any, request: Request):
        """From the cache while the collections the search reads are unchanged."""
        cache: SearchCache = request.app.state.search_cache
        key = (request.method, str(request.url), search_request.model_dump_json(exclude_none=True, by_alias=True))
        if not cache.asked_before(key):
            return await self._answer(search_request, request)
        # The stamp and the answer from one server (eolake_catalog.reads): the answer is never older than its stamp.
        async with request.app.state.connections.pinned(request) as conn:
            stamp = await cache.stamp(conn, search_request.collections)
            answer = cache.get(key, stamp)
            if answer is None:
                answer = await self._answer(search_request, request)
                cache.put(key, stamp, answer)
        return answer

    async def _answer(self, search_request: Any, request: Request) -> dict:
        if "item_id" in request.path_params:  # an item read shows no numberMatched: pgstac need not count
            search_request.conf = {**(search_request.conf or {}), "context": "off"}
        answer = await super()._search_base(search_request, request)
        if "numberMatched" in answer:
            answer[ESTIMATED] = await self._estimated(answer["numberMatched"], search_request, request)
        return answer

    async def _estimated(self, matched: int, search_request: Any, request: Request) -> bool:
        """Whether pgstac answered the planner's estimate: with context `auto`, when the planner expects at least
        context_estimated_count matches at a cost of at least context_estimated_cost (pgstac's own rule, asked of
        the same plan; only for answers that large, which an exact count below the threshold never is)."""
        tuning = request.app.state.pgstac_search
        if tuning.context != "auto" or matched < tuning.context_estimated_count:
            return False
        async with request.app.state.get_connection(request, "r") as conn:
            where = await conn.fetchval(
                "SELECT pgstac.stac_search_to_where($1::text::jsonb)",
                search_request.model_dump_json(exclude_none=True, by_alias=True),
            )
            explained = await conn.fetchval(PLAN.format(where))  # JSON, decoded by the pool's codec
        plan = (orjson.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
        rows, cost = plan["Plan Rows"], plan["Total Cost"]
        return rows >= tuning.context_estimated_count and cost >= tuning.context_estimated_cost


def geojson(answer: Any) -> Any:
    """Item collections are GeoJSON, also when stac-fastapi answers a `fields` selection as plain JSON."""
    if isinstance(answer, Response) and answer.headers.get("content-type") == "application/json":
        answer.headers["content-type"] = GEOJSON
    return answer


class GeometryChecked:
    """Items whose geometry PostGIS can store but never write back as GeoJSON (a GeometryCollection inside another)
    would break every search that returns them: they are refused."""

    def _validate_item(self, request: Request, item: dict, collection_id: str, expected_item_id: str | None = None):
        writable_geometry(item.get("geometry"))
        super()._validate_item(request, item, collection_id, expected_item_id)


async def _stored(request: Request, query: str, *args: str) -> dict | None:
    async with request.app.state.get_connection(request, "r") as conn:
        return await conn.fetchval(query, *args)


async def _index_queryables(request: Request, collection_id: str) -> None:
    """The indexes a written collection's summaries call for (eolake_catalog.schema). The collection is written
    either way: an index that cannot be built now (a statement timeout on a large collection) is logged, and the
    next migration builds it."""
    try:
        async with request.app.state.get_connection(request, "w") as conn:
            await index_summaries(conn, [collection_id])
    except (pg_errors.PostgresError, OSError) as exc:
        log.warning("queryable indexes of %s not built now: %s", collection_id, exc)


@attr.s
class CatalogBulkTransactions(GeometryChecked, BulkTransactionsClient):
    pass


@attr.s
class CatalogTransactions(GeometryChecked, TransactionsClient):
    """stac-fastapi-pgstac writes a patched document without checking it: checked first here, so a patch that
    would leave an invalid item or collection (links that are not a list…) is a 400 and nothing is written."""

    async def create_collection(self, collection: Any, request: Request, **kwargs: Any):
        writable_collection(collection.model_dump(mode="json"))
        created = await super().create_collection(collection, request, **kwargs)
        await _index_queryables(request, collection.id)
        return created

    async def update_collection(self, collection: Any, request: Request, **kwargs: Any):
        writable_collection(collection.model_dump(mode="json"))
        updated = await super().update_collection(collection, request, **kwargs)
        await _index_queryables(request, collection.id)
        return updated

    async def patch_collection(self, collection_id: str, patch: Any, request: Request, **kwargs: Any):
        existing = await _stored(request, "SELECT get_collection($1::text)", collection_id)
        if existing is not None:
            writable_collection(patched_document(existing, patch, stac_pydantic.Collection))
        patched = await super().patch_collection(collection_id, patch, request, **kwargs)
        await _index_queryables(request, collection_id)
        return patched

    async def patch_item(self, collection_id: str, item_id: str, patch: Any, request: Request, **kwargs: Any):
        existing = await _stored(request, "SELECT get_item($1::text, $2::text)", item_id, collection_id)
        if existing is not None:
            patched_document(existing, patch, stac_pydantic.Item)
        return await super().patch_item(collection_id, item_id, patch, request, **kwargs)

    async def create_item(self, collection_id: str, item: Any, request: Request, **kwargs: Any):
        if item is None:  # stac-fastapi's body is optional here (a POST may have none): nothing to create
            raise HTTPException(400, "the request body must be an Item or an ItemCollection")
        created = await super().create_item(collection_id, item, request, **kwargs)
        if getattr(item, "type", None) == "FeatureCollection":  # stac-fastapi answers an empty, untyped 201
            return JSONResponse({"created": [feature.id for feature in item.features]}, status_code=201)
        return created


class CatalogExtensions(Extensions):
    @property
    def search(self) -> list:
        return _with_dependent_queryables(super().search)

    @property
    def item_collection(self) -> list:
        return _with_dependent_queryables(super().item_collection)

    @property
    def transaction(self) -> list:
        found = super().transaction
        for extension in found:
            if isinstance(extension, TransactionExtension):
                extension.client = CatalogTransactions()
            elif isinstance(extension, BulkTransactionExtension):
                extension.client = CatalogBulkTransactions()
        return found


def _with_dependent_queryables(extensions: list) -> list:
    for extension in extensions:
        if isinstance(extension, (SearchFilterExtension, ItemCollectionFilterExtension)):
            extension.client = DependentQueryables()
    return extensions


@asynccontextmanager
async def replica_reads(app: FastAPI, settings: CatalogSettings):
    """With a read replica: its pool (the primary's read pool stays, for reads that must see the primary), and the
    task watching its lag. The primary's connections per worker are what they are without a replica."""
    if settings.read_database_url is None:
        yield
        return
    replica = settings.postgres(settings.pool_size - settings.write_pool_size, reads=True, replica=True)
    pool = await create_pool(replica)
    lag = ReplicaLag(
        settings.service_name,
        settings.max_replica_lag_seconds,
        primary_position=lambda: app.state.readpool.fetchval(PRIMARY_POSITION, timeout=ACQUIRE_SECONDS),
        replayed=lambda: pool.fetchval(REPLAYED, timeout=ACQUIRE_SECONDS),
    )
    app.state.connections.replicas, app.state.connections.lag = pool, lag
    await lag.check()  # the first reads already know whether the replica may serve them
    watch = asyncio.create_task(lag.watch())
    try:
        yield
    finally:
        watch.cancel()
        await pool.close()


async def create_pool(settings: PostgresSettings) -> asyncpg.Pool:
    """As stac-fastapi-pgstac creates its pools, with a connect timeout: a replica that does not answer is skipped."""
    return await asyncpg.create_pool(
        settings.connection_string,
        min_size=settings.db_min_conn_size,
        max_size=settings.db_max_conn_size,
        max_inactive_connection_lifetime=settings.db_max_inactive_conn_lifetime,
        init=con_init,
        server_settings=settings.server_settings.model_dump(),
        timeout=ACQUIRE_SECONDS,
    )


def create_app(settings: CatalogSettings | None = None) -> FastAPI:
    settings = settings or CatalogSettings()
    instrumentor = AsyncPGInstrumentor()  # one per process: queries become child spans of the request's span
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
    stac_settings = Settings(
        stac_fastapi_title=settings.title,
        stac_fastapi_description=settings.description,
        stac_fastapi_landing_id=LANDING_ID,
        stac_fastapi_version=__version__,
        enable_transactions_extensions=True,
        enabled_extensions=None,  # every read extension: query, sort, fields, filter, free text, pagination…
        # Items are hydrated (merged with their collection's base item) here rather than in pgstac: the database
        # spent 60-80 % of a search's time on it (bench/explain.py), and catalog replicas scale out, it does not.
        use_api_hydrate=True,
    )
    read = settings.postgres(settings.pool_size - settings.write_pool_size, reads=True)
    write = settings.postgres(settings.write_pool_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Pools start empty (min size 0): the service starts, and reports not ready, while Postgres is down.
        app.state.connections = Connections()
        await connect_to_db(
            app,
            get_conn=app.state.connections,
            postgres_settings=read,
            add_write_connection_pool=True,
            write_postgres_settings=write,
        )
        async with replica_reads(app, settings):
            yield
        await close_db_connection(app)

    api = instantiate_api(
        client=CatalogClient,
        extensions=CatalogExtensions(settings=stac_settings),
        lifespan=lifespan,
        settings=stac_settings,
    )
    api.add_route_dependencies(scopes=WRITE_ROUTES, dependencies=[Depends(require_role("admin"))])
    app = api.app
    app.state.search_cache = SearchCache(settings.cache_entries, settings.cache_mib * 1024 * 1024)
    app.state.pgstac_search = settings.pgstac
    app.user_middleware.append(Middleware(EtagMiddleware))  # innermost: validators of the uncompressed answer
    app.user_middleware.append(Middleware(SearchBodyMiddleware))
    # CORS is the kit's, from the spec: stac-fastapi's own (any origin, its header list) would answer first.
    app.user_middleware = [m for m in app.user_middleware if m.cls is not CORSMiddleware]

    async def pgstac() -> None:
        async with app.state.readpool.acquire(timeout=settings.readiness_timeout) as conn:
            await conn.fetchval("SELECT pgstac.get_version()")

    # pgstac raises (P0001) and data errors come from what the client sent, e.g. an unsupported CQL2 operator.
    # A JSON patch that does not apply to the document as it is (a missing member, a failed test) is the client's.
    status_codes = {
        **DEFAULT_STATUS_CODES,
        pg_errors.RaiseError: 400,
        pg_errors.DataError: 400,
        jsonpatch.JsonPatchException: 400,
        jsonpatch.JsonPointerException: 400,
    }
    return install_kit(app, settings, checks={"pgstac": pgstac}, status_codes=status_codes, responses=RESPONSES)
