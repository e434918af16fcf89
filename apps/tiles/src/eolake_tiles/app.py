"""The tile service: titiler-pgstac's factories behind the service kit, reading only allow-listed assets."""

import asyncio
import json
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import morecantile
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.dependencies.utils import get_parameterless_sub_dependant
from fastapi.routing import APIRoute
from psycopg import OperationalError
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import Field, ValidationError, ValidationInfo, field_validator
from titiler.core.dependencies import DefaultDependency
from titiler.core.errors import DEFAULT_STATUS_CODES
from titiler.core.factory import AlgorithmFactory, ColorMapFactory, MultiBaseTilerFactory, TMSFactory
from titiler.extensions import wmtsExtension
from titiler.mosaic.errors import MOSAIC_STATUS_CODES
from titiler.mosaic.extensions.wmts import wmtsExtension as wmtsExtensionMosaic
from titiler.pgstac import model
from titiler.pgstac.dependencies import CollectionIdParams, ItemIdParams, SearchIdParams
from titiler.pgstac.errors import PGSTAC_STATUS_CODES, BackendError, ReadOnlyPgSTACError
from titiler.pgstac.extensions import searchInfoExtension
from titiler.pgstac.factory import MosaicTilerFactory, add_search_list_route, add_search_register_route

from eolake_kit import __version__, install_kit, require_role
from eolake_kit.bounds import reconnecting, walk
from eolake_kit.datetimes import check_interval
from eolake_kit.replicas import PRIMARY_POSITION, REPLAYED, ReplicaLag
from eolake_tiles.cache import ImageMiddleware, RenderedCache
from eolake_tiles.guard import AllowList, AssetNotAllowed, configure_gdal, readers
from eolake_tiles.reads import ReplicaRouting, RoutedPool, fetched
from eolake_tiles.settings import TilesSettings

EXPRESSION = re.compile(r"[A-Za-z0-9_\s.+\-*/()<>=!&|,;:?^%~\[\]]*")
EXPRESSION_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+(?:\.\d*)?|\*\*|\S")
SIZE_PARAMS = ("width", "height", "max_size")
MAX_BIGINT = 2**63 - 1


def limits_dependency(settings: TilesSettings) -> type[DefaultDependency]:
    """pgstac's per-tile search bounds, defaulting to (and capped at) the configured ones."""

    @dataclass
    class MosaicLimits(DefaultDependency):
        scan_limit: Annotated[
            int, Query(ge=1, le=settings.mosaic_scan_limit, description="items pgstac scans at most")
        ] = settings.mosaic_scan_limit
        items_limit: Annotated[int, Query(ge=1, le=settings.mosaic_items_limit, description="items read at most")] = (
            settings.mosaic_items_limit
        )
        time_limit: Annotated[
            int, Query(ge=1, le=settings.mosaic_time_limit, description="seconds pgstac may search")
        ] = settings.mosaic_time_limit
        exitwhenfull: Annotated[bool, Query(description="stop once the tile is covered")] = True
        skipcovered: Annotated[bool, Query(description="skip items hidden under earlier ones")] = True

    return MosaicLimits


def part_size_dependency(settings: TilesSettings) -> type[DefaultDependency]:
    """Sizes of bbox/feature images and feature statistics: titiler reads them at full resolution unless told; here
    they default to max_part_size (an explicit size stays capped by the guard's max_image_size)."""

    @dataclass
    class BoundedPartParams(DefaultDependency):
        # Field, not Query: titiler passes these as query or as path parameters ({width}x{height}).
        max_size: Annotated[int | None, Field(description="Maximum image size to read onto.")] = settings.max_part_size
        height: Annotated[int | None, Field(description="Force output image height.")] = None
        width: Annotated[int | None, Field(description="Force output image width.")] = None

        def __post_init__(self):
            if self.width or self.height:
                self.max_size = None

    return BoundedPartParams


def check_expression(expression: str, settings: TilesSettings) -> None:
    """Band math bounded in length, characters, bands produced (`;`), nesting and terms, before numexpr sees it."""
    if len(expression) > settings.max_expression_length:
        raise HTTPException(400, f"expression longer than {settings.max_expression_length} characters")
    if not EXPRESSION.fullmatch(expression):
        raise HTTPException(400, "expression contains characters outside band math")
    if expression.count(";") + 1 > settings.max_expression_bands:
        raise HTTPException(400, f"expression produces more than {settings.max_expression_bands} bands")
    depth = 0
    for char in expression:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth > settings.max_expression_depth:
            raise HTTPException(400, f"expression nesting exceeds {settings.max_expression_depth} levels")
    if len(EXPRESSION_TOKEN.findall(expression)) > settings.max_expression_terms:
        raise HTTPException(400, f"expression exceeds {settings.max_expression_terms} terms")


def request_guard(settings: TilesSettings):
    """Bounds on what a request may ask for, checked before anything is read."""

    def guard(request: Request) -> None:
        query = request.query_params
        if "url" in query:
            raise HTTPException(400, "the url parameter is not accepted: this service reads catalogued assets only")
        for name, value in query.multi_items():
            if len(value) > settings.max_parameter_length:
                raise HTTPException(400, f"parameter {name} is longer than {settings.max_parameter_length} characters")
        for expression in query.getlist("expression"):
            check_expression(expression, settings)
        for text in query.getlist("algorithm_params"):  # titiler passes it on as keyword arguments (**params)
            _json_object(text, "algorithm_params")
        params = {**query, **request.path_params}
        for name in SIZE_PARAMS:
            if name in params:
                _bounded_int(params[name], name, settings.max_image_size)
        if "tilesize" in params:
            _bounded_int(params["tilesize"], "tilesize", settings.max_tile_size)
        if {"z", "x", "y"} <= params.keys():
            _check_tile(params, settings.max_zoom)

    return guard


def _json_object(text: str, name: str) -> None:
    try:
        value = json.loads(text)
    except ValueError:
        raise HTTPException(400, f"{name} is not valid JSON") from None
    if not isinstance(value, dict):
        raise HTTPException(400, f"{name} must be a JSON object")


def _bounded_int(value: str, name: str, upper: int) -> None:
    try:
        number = int(value)
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer") from None
    if not 1 <= number <= upper:
        raise HTTPException(400, f"{name} must be between 1 and {upper}")


def _check_tile(params: dict, max_zoom: int) -> None:
    try:
        z, x, y = int(params["z"]), int(params["x"]), int(params["y"])
    except ValueError:
        raise HTTPException(400, "z, x and y must be integers") from None
    try:
        tms = morecantile.tms.get(params.get("tileMatrixSetId", "WebMercatorQuad"))
    except Exception:
        return  # an unknown tile matrix set: titiler's own validation answers
    if not tms.minzoom <= z <= min(tms.maxzoom, max_zoom):
        raise HTTPException(404, f"zoom {z} is outside {tms.minzoom}..{min(tms.maxzoom, max_zoom)}")
    matrix = tms.matrix(z)
    if not (0 <= x < matrix.matrixWidth and 0 <= y < matrix.matrixHeight):
        raise HTTPException(404, f"tile {z}/{x}/{y} is outside the tile matrix")


class RegisterSearch(model.RegisterMosaic):
    @field_validator("intersects")
    @classmethod
    def validate_spatial(cls, value, info: ValidationInfo):
        """titiler-pgstac's check, which raised a KeyError (a 500) when the bbox had failed its own validation."""
        if value and info.data.get("bbox"):
            raise ValueError("intersects and bbox parameters are mutually exclusive")
        return value


def checked_search(body: RegisterSearch) -> tuple[model.PgSTACSearch, model.Metadata]:
    """A search to register, its datetime checked before pgstac sees it (pgstac answers a bad one with an error)."""
    if body.datetime:
        _check_datetime(body.datetime)
    search = body.model_dump(exclude_none=True, exclude={"metadata"}, by_alias=True)
    return model.PgSTACSearch(**search), body.metadata


def _check_datetime(value: str) -> None:
    try:
        check_interval(value)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def listable(request: Request) -> None:
    """What titiler-pgstac's search list puts into its SQL: the offset as a bigint, and every other parameter
    (sortby, metadata filters) as a literal of a query with placeholders, where a `%` breaks the statement."""
    offset = request.query_params.get("offset")
    if offset and offset.lstrip("+").isdigit() and int(offset) > MAX_BIGINT:
        raise HTTPException(400, f"offset must be at most {MAX_BIGINT}")
    if any("%" in key or "%" in value for key, value in request.query_params.multi_items()):
        raise HTTPException(400, "search list parameters cannot contain %")


async def features_with_geometry(request: Request) -> None:
    """A GeoJSON body (statistics, feature images) whose features all have a geometry."""
    if request.method != "POST" or not request.headers.get("content-type", "").startswith("application/"):
        return
    try:
        body = await request.json()
    except ValueError:
        return  # the route's own parsing answers
    features = body.get("features") if isinstance(body, dict) and body.get("type") == "FeatureCollection" else [body]
    if isinstance(features, list) and any(isinstance(f, dict) and not _placed(f.get("geometry")) for f in features):
        raise HTTPException(400, "every feature needs a geometry with at least one position")


def _placed(geometry: object) -> bool:
    """A geometry with a position: an empty one (`"coordinates": []`) has no extent to read pixels under."""
    return isinstance(geometry, dict) and any(
        isinstance(node, list) and node and all(isinstance(c, int | float) for c in node) for node, _ in walk(geometry)
    )


def _require(app: FastAPI, path: str, method: str, role: str, extra: list | None = None) -> None:
    """Put a role (and further checks) in front of a route titiler-pgstac added to the app."""
    route = next(
        r for r in app.router.routes if isinstance(r, APIRoute) and r.path == path and method in (r.methods or ())
    )
    for depends in [Depends(require_role(role)), *(extra or [])][::-1]:
        route.dependant.dependencies.insert(0, get_parameterless_sub_dependant(depends=depends, path=path))
        route.dependencies.append(depends)


def database_pool(settings: TilesSettings, conninfo: str, options: str = "") -> ConnectionPool:
    """Opened by the lifespan; min_size 0: the service starts, and reports not ready, while Postgres is down."""
    return ConnectionPool(
        conninfo=conninfo,
        min_size=0,
        max_size=settings.pool_size,
        open=False,
        timeout=settings.pool_timeout,
        max_idle=300,
        **reconnecting(ConnectionPool),
        kwargs={
            "options": f"-c search_path=pgstac,public -c application_name=eolake-tiles "
            f"{settings.postgres_options()} {options}".rstrip(),
            "connect_timeout": 5,
        },
    )


def create_app(settings: TilesSettings | None = None) -> FastAPI:
    settings = settings or TilesSettings()
    configure_gdal()
    allow = AllowList(settings.storage_path, settings.allowed_prefixes)
    _, item_reader, mosaic_reader = readers(allow)

    pools = RoutedPool(database_pool(settings, settings.conninfo))
    lag = None
    if settings.read_database_url is not None:
        # pgstac's readonly mode: a search on the replica writes no bookkeeping (a hot standby refuses writes).
        replica = settings.read_database_url.get_secret_value()
        pools.replica = database_pool(settings, replica, "-c pgstac.readonly=true")
        lag = ReplicaLag(
            settings.service_name,
            settings.max_replica_lag_seconds,
            primary_position=lambda: asyncio.to_thread(fetched, pools.primary, PRIMARY_POSITION, settings.pool_timeout),
            replayed=lambda: asyncio.to_thread(fetched, pools.replica, REPLAYED, settings.pool_timeout),
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.dbpool = pools
        for pool in (pools.primary, pools.replica):
            if pool is not None:
                pool.open()
        watch = None
        if lag is not None:
            await lag.check()
            watch = asyncio.create_task(lag.watch())
        try:
            yield
        finally:
            if watch is not None:
                watch.cancel()
            pools.close()

    app = FastAPI(
        title="eolake tiles",
        description="Map tiles, previews, point values and statistics of the catalogued rasters (titiler-pgstac)",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/api",
        docs_url="/api.html",
    )
    guard = [Depends(request_guard(settings)), Depends(features_with_geometry)]
    limits = limits_dependency(settings)
    part_sizes = part_size_dependency(settings)

    def mosaic(path_dependency, prefix: str) -> MosaicTilerFactory:
        return MosaicTilerFactory(
            path_dependency=path_dependency,
            router_prefix=prefix,
            dataset_reader=mosaic_reader,
            img_part_dependency=part_sizes,
            assets_accessor_dependency=limits,
            add_statistics=True,
            add_viewer=False,
            add_part=True,
            add_ogc_maps=False,
            extensions=[searchInfoExtension(), wmtsExtensionMosaic()],
        )

    searches = mosaic(SearchIdParams, "/searches/{search_id}")
    app.include_router(
        searches.router, prefix="/searches/{search_id}", tags=["Registered search mosaic"], dependencies=guard
    )
    add_search_list_route(app, prefix="/searches", tags=["Registered search mosaic"])
    add_search_register_route(
        app,
        prefix="/searches",
        tags=["Registered search mosaic"],
        search_dependency=checked_search,
        tile_dependencies=[
            searches.layer_dependency,
            searches.dataset_dependency,
            searches.pixel_selection_dependency,
            searches.process_dependency,
            searches.render_dependency,
            searches.assets_accessor_dependency,
            searches.reader_dependency,
            searches.backend_dependency,
        ],
    )

    collection = mosaic(CollectionIdParams, "/collections/{collection_id}")
    item = MultiBaseTilerFactory(
        reader=item_reader,
        path_dependency=ItemIdParams,
        router_prefix="/collections/{collection_id}/items/{item_id}",
        img_part_dependency=part_sizes,
        add_viewer=False,
        extensions=[wmtsExtension()],
    )
    # Item routes first: /collections/{c}/items/{i}/… must not be taken for a collection mosaic path.
    app.include_router(
        item.router, prefix="/collections/{collection_id}/items/{item_id}", tags=["Item"], dependencies=guard
    )
    app.include_router(
        collection.router, prefix="/collections/{collection_id}", tags=["Collection mosaic"], dependencies=guard
    )
    app.include_router(TMSFactory().router, tags=["Tiling schemes"])
    app.include_router(AlgorithmFactory().router, tags=["Algorithms"])
    app.include_router(ColorMapFactory().router, tags=["Colormaps"], dependencies=guard)
    # Registering writes to the database: users only. Registered searches are content-addressed (one row for
    # everyone who registers the same search), so a list of "one's own" has no meaning: listing is for admins.
    for path in ("/searches/", "/searches/list"):
        _require(app, path, "GET", "admin", [Depends(listable)])
    _require(app, "/searches/register", "POST", "user")

    @app.get("/", tags=["Landing"], summary="What this service offers")
    def landing() -> dict:
        base = settings.service_url
        return {
            "title": "eolake tiles",
            "links": [
                {"rel": "service-desc", "href": f"{base}/api", "type": "application/vnd.oai.openapi+json;version=3.1"},
                {"rel": "service-doc", "href": f"{base}/api.html", "type": "text/html"},
                {
                    "rel": "item-tilejson",
                    "templated": True,
                    "type": "application/json",
                    "href": f"{base}/collections/{{collection_id}}/items/{{item_id}}/WebMercatorQuad/tilejson.json",
                },
                {
                    "rel": "collection-tilejson",
                    "templated": True,
                    "type": "application/json",
                    "href": f"{base}/collections/{{collection_id}}/WebMercatorQuad/tilejson.json",
                },
                {"rel": "tiling-schemes", "href": f"{base}/tileMatrixSets", "type": "application/json"},
                {"rel": "colormaps", "href": f"{base}/colorMaps", "type": "application/json"},
            ],
        }

    app.add_middleware(ReplicaRouting, pools=pools, lag=lag, timeout=settings.pool_timeout)
    app.add_middleware(
        ImageMiddleware,
        max_age=settings.cache_max_age,
        timeout=settings.request_timeout,
        cache=RenderedCache(settings.tile_cache_mb * 1024 * 1024, settings.tile_cache_ttl),
    )

    async def pgstac() -> None:  # the primary: a replica down leaves the reads to it, and the service ready
        def query() -> None:
            with pools.primary.connection(timeout=settings.readiness_timeout) as conn:
                conn.execute("SELECT pgstac.get_version()")

        await asyncio.to_thread(query)

    status_codes = {
        **{k: v for k, v in DEFAULT_STATUS_CODES.items() if k is not Exception},
        **MOSAIC_STATUS_CODES,
        **PGSTAC_STATUS_CODES,
        AssetNotAllowed: 403,
        OperationalError: 503,
        PoolTimeout: 503,
        # raised by titiler-pgstac for a DataError of pgstac: the search or id the client sent
        BackendError: 400,
        ReadOnlyPgSTACError: 503,
        # pgstac refusing what the client sent (a malformed CQL2 filter, an out-of-range number)
        pg_errors.RaiseException: 400,
        pg_errors.DataError: 400,
        # titiler-pgstac's own parameter checks (a CQL2 filter) raise it outside request validation
        ValidationError: 400,
    }
    return install_kit(app, settings, checks={"pgstac": pgstac}, status_codes=status_codes)
