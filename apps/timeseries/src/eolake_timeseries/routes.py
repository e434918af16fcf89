"""The routers: OGC API Common (landing page, conformance, collections), OGC API Features (stations and water
levels, their queryables) and OGC API EDR (water levels by position, area or station). A handler parses (query
parameters through the ItemsParams and EdrParams dependencies), calls the core, answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from starlette.responses import JSONResponse, Response

from eolake_kit.refs import segment
from eolake_timeseries import deps, documents, edr
from eolake_timeseries.deps import CatalogItems, Settings
from eolake_timeseries.features import (
    COLLECTION,
    COVJSON,
    CSV,
    CSV_COLUMNS,
    GEOJSON,
    OBSERVATION_COLUMNS,
    OBSERVATION_QUERYABLES,
    OBSERVATIONS,
    QUERYABLES,
    Page,
    features_csv,
    observation_features,
    page,
    selected,
    with_properties,
)
from eolake_timeseries.query import (
    BadRequest,
    parse_bbox,
    parse_coords,
    parse_crs,
    parse_datetime,
    parse_filter,
    parse_names,
)
from eolake_timeseries.store import SeriesStore

STATION_ID = r"^[A-Za-z0-9._-]{1,100}$"
FEATURE_FORMATS = {"json": GEOJSON, "geojson": GEOJSON, "csv": CSV}
EDR_FORMATS = {"coveragejson": COVJSON, "covjson": COVJSON, "json": COVJSON, "csv": CSV}
ITEMS_PARAMS = ("f", "bbox", "bbox-crs", "limit", "offset", "datetime", "filter", "filter-lang", "filter-crs")
EDR_PARAMS = ("f", "coords", "datetime", "parameter-name", "crs")
FORMAT = Query(description="output format: json/geojson or csv (else the Accept header decides)", max_length=20)
EDR_FORMAT = Query(description="output format: CoverageJSON or CSV (else the Accept header decides)", max_length=20)
DATETIME = Query(
    alias="datetime",
    max_length=100,
    description="an RFC 3339 instant or date, or an interval start/end with .. for an open side",
)
PARAMETER_NAME = Query(alias="parameter-name", description="wse, wse_u or both (comma-separated)", max_length=100)
CRS = Query(description="only CRS84 (longitude, latitude)", max_length=100)
EdrCollection = Annotated[str, Depends(deps.the_collection)]
Features = Annotated[list[dict], Depends(deps.features)]
Store = Annotated[SeriesStore, Depends(deps.store)]


class GeoJSONResponse(JSONResponse):
    media_type = GEOJSON


class CoverageJSONResponse(JSONResponse):
    media_type = COVJSON


def csv_response(text: str, name: str, links: Sequence[dict[str, Any]] = ()) -> Response:
    """CSV, with the pages around it as Link headers (RFC 8288): a table has no room for them."""
    headers = {"Content-Disposition": f'inline; filename="{name}.csv"'}
    if links:
        headers["Link"] = ", ".join(f'<{li["href"]}&f=csv>; rel="{li["rel"]}"; type="text/csv"' for li in links)
    return Response(text, media_type="text/csv; charset=utf-8", headers=headers)


common = APIRouter(tags=["Capabilities"])


@common.get("/", summary="Landing page: what this service offers")
def landing(config: Settings) -> dict:
    return documents.landing(config.service_url)


@common.get("/conformance", summary="The conformance classes this service implements")
def conformance() -> dict:
    return documents.conformance()


@common.get("/collections", summary="The collections: hydrology virtual stations")
def collections(config: Settings, features: Features) -> dict:
    return documents.collections(config.service_url, features)


@common.get("/collections/{collection_id}", summary="A collection: its items (and, for stations, EDR queries)")
def collection(
    config: Settings, collection_id: Annotated[str, Depends(deps.feature_collection)], features: Features
) -> dict:
    if collection_id == COLLECTION:
        return documents.collection(config.service_url, features)
    return documents.observations(config.service_url, features)


features_router = APIRouter(tags=["Features"])
FeatureCollection = Annotated[str, Depends(deps.feature_collection)]
QUERYABLES_OF = {COLLECTION: QUERYABLES, OBSERVATIONS: OBSERVATION_QUERYABLES}
COLUMNS_OF = {COLLECTION: CSV_COLUMNS, OBSERVATIONS: OBSERVATION_COLUMNS}


@features_router.get(
    "/collections/{collection_id}/queryables",
    summary="What a filter may refer to",
    response_class=JSONResponse,
    responses={200: {"content": {"application/schema+json": {}}}},
)
def queryables(config: Settings, collection_id: FeatureCollection) -> Response:
    return JSONResponse(documents.queryables(config.service_url, collection_id), media_type="application/schema+json")


class ItemsQuery:
    """The query parameters of an items request, parsed; the filter waits for the collection's queryables."""

    def __init__(
        self,
        request: Request,
        config: Settings,
        bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy (CRS84)", max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, description="features per page (capped to the page size)")] = 10,
        offset: Annotated[int, Query(ge=0, le=1_000_000, description="features skipped")] = 0,
        datetime_: Annotated[str | None, DATETIME] = None,
        filter_: Annotated[str | None, Query(alias="filter", description="CQL2 on the queryables")] = None,
        filter_lang: Annotated[str | None, Query(alias="filter-lang", max_length=20)] = None,
        filter_crs: Annotated[str | None, Query(alias="filter-crs", max_length=100)] = None,
        bbox_crs: Annotated[str | None, Query(alias="bbox-crs", max_length=100)] = None,
        f: Annotated[str | None, FORMAT] = None,
    ):
        self.media = deps.output(f, request, FEATURE_FORMATS, GEOJSON)
        parse_crs(filter_crs, "filter-crs")
        parse_crs(bbox_crs, "bbox-crs")
        self.box, self.when = parse_bbox(bbox), parse_datetime(datetime_)
        self.limit, self.offset = min(limit, config.limits.page_size), offset
        self.filter, self.filter_lang, self.limits = filter_, filter_lang, config.limits
        self.params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "limit", "f")]

    def equalities(self, queryables: dict) -> dict[str, str]:
        return {name: value for name, value in self.params if name in queryables}

    def links(self, url: str, shown: Page) -> list[dict]:
        def at(where: int, *more: tuple[str, str]) -> str:
            return f"{url}/items?{urlencode([*self.params, ('limit', self.limit), ('offset', where), *more])}"

        links = [
            {"rel": "self", "href": at(self.offset), "type": GEOJSON},
            {"rel": "alternate", "href": at(self.offset, ("f", "csv")), "type": CSV},
            {"rel": "collection", "href": url, "type": "application/json"},
        ]
        if shown.next_offset is not None:
            links.append({"rel": "next", "href": at(shown.next_offset), "type": GEOJSON})
        if shown.prev_offset is not None:
            links.append({"rel": "prev", "href": at(shown.prev_offset), "type": GEOJSON})
        return links


ItemsParams = Annotated[ItemsQuery, Depends()]


def _bounded(chosen: list[dict], config) -> list[dict]:
    if len(chosen) > config.max_query_stations:
        raise BadRequest(
            f"the query selects {len(chosen)} stations, more than {config.max_query_stations}; "
            "narrow it (bbox, datetime, station)"
        )
    return chosen


async def _observations(
    config, store: SeriesStore, items: dict[str, dict], stations: list[dict], query: ItemsQuery, url: str
) -> list[dict]:
    """The measurements of the stations the query can select (by location, time span and station properties), as
    features; at most max_query_stations series are read."""
    shared = {"station": "id", "name": "name", "river": "river", "basin": "basin"}
    at_stations = {shared[k]: v for k, v in query.equalities(shared).items()}
    candidates = _bounded(with_properties(selected(stations, query.box, query.when, None), at_stations), config)
    read = await asyncio.gather(*(deps.read_series(store, items, station) for station in candidates))
    return [feature for s in read for feature in observation_features(s.feature, s.rows, url)]


@features_router.get(
    "/collections/{collection_id}/items",
    summary="Stations, or water levels, as GeoJSON or CSV: bbox, datetime, queryables, CQL2 filter, paging",
    response_class=GeoJSONResponse,
    responses={200: {"content": {GEOJSON: {}, CSV: {}}}},
)
async def items(
    request: Request,
    config: Settings,
    collection_id: FeatureCollection,
    query: ItemsParams,
    features: Features,
    catalog_items: CatalogItems,
    store: Store,
) -> Response:
    queryables = QUERYABLES_OF[collection_id]
    deps.refuse_unknown(request, [*ITEMS_PARAMS, *(name for name in queryables if name != "geometry")])
    expression = parse_filter(query.filter, query.filter_lang, set(queryables), query.limits)
    url = f"{config.service_url}/collections/{collection_id}"
    candidates = (
        features
        if collection_id == COLLECTION
        else await _observations(config, store, catalog_items, features, query, url)
    )
    chosen = with_properties(selected(candidates, query.box, query.when, expression), query.equalities(queryables))
    shown = page(chosen, query.offset, query.limit)
    links = query.links(url, shown)
    if query.media == CSV:
        return csv_response(
            features_csv(shown.features, COLUMNS_OF[collection_id]),
            collection_id,
            [li for li in links if li["rel"] in ("next", "prev")],
        )
    return GeoJSONResponse(
        {
            "type": "FeatureCollection",
            "features": shown.features,
            "numberMatched": shown.matched,
            "numberReturned": len(shown.features),
            "timeStamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "links": links,
        }
    )


def _feature(features: list[dict], feature_id: str) -> dict:
    found = next((f for f in features if f["id"] == feature_id), None)
    if found is None:
        raise HTTPException(404, f"no station {feature_id}")
    return found


async def _observation(
    config, store: SeriesStore, items: dict[str, dict], stations: list[dict], feature_id: str
) -> dict:
    sid = feature_id.rpartition("_")[0]
    station = next((s for s in stations if s["id"] == sid), None)
    if station is None:
        raise HTTPException(404, f"no water level {feature_id}")
    series = await deps.read_series(store, items, station)
    url = f"{config.service_url}/collections/{OBSERVATIONS}"
    found = [f for f in observation_features(station, series.rows, url) if f["id"] == feature_id]
    if not found:
        raise HTTPException(404, f"no water level {feature_id}")
    return found[0]


@features_router.get(
    "/collections/{collection_id}/items/{feature_id}",
    summary="One station, or one water level",
    response_class=GeoJSONResponse,
    dependencies=[Depends(deps.only("f"))],
    responses={200: {"content": {GEOJSON: {}, CSV: {}}}},
)
async def item(
    request: Request,
    config: Settings,
    collection_id: FeatureCollection,
    features: Features,
    catalog_items: CatalogItems,
    store: Store,
    feature_id: Annotated[str, Path(pattern=STATION_ID)],
    f: Annotated[str | None, FORMAT] = None,
) -> Response:
    media = deps.output(f, request, FEATURE_FORMATS, GEOJSON)
    found = (
        _feature(features, feature_id)
        if collection_id == COLLECTION
        else await _observation(config, store, catalog_items, features, feature_id)
    )
    if media == CSV:
        return csv_response(features_csv([found], COLUMNS_OF[collection_id]), feature_id)
    return GeoJSONResponse(found)


edr_router = APIRouter(tags=["Environmental data retrieval"])
SERIES_ERRORS = {
    404: "no such station or series",
    502: "the series file is malformed or too large",
    503: "the catalog or the storage is unavailable",
}


class EdrParams:
    """The query parameters every EDR data query takes, parsed."""

    def __init__(
        self,
        request: Request,
        datetime_: Annotated[str | None, DATETIME] = None,
        parameter_name: Annotated[str | None, PARAMETER_NAME] = None,
        crs: Annotated[str | None, CRS] = None,
        f: Annotated[str | None, EDR_FORMAT] = None,
    ):
        self.media = deps.output(f, request, EDR_FORMATS, COVJSON)
        parse_crs(crs)
        self.when = parse_datetime(datetime_)
        self.names = parse_names(parameter_name, edr.PARAMETERS, "parameter-name")


Edr = Annotated[EdrParams, Depends()]


class EdrQuery:
    """What every EDR data query of the stations collection works with: the settings, the stations and their
    catalog items, the series store and the parsed query parameters."""

    def __init__(
        self, config: Settings, _: EdrCollection, features: Features, items: CatalogItems, store: Store, params: Edr
    ):
        self.config, self.features, self.items, self.store, self.params = config, features, items, store, params

    def by_id(self) -> list[dict[str, Any]]:
        return sorted(self.features, key=lambda s: s["id"])

    async def answer(
        self, chosen: list[dict[str, Any]], *, single: bool = False, name: str = "water-levels"
    ) -> Response:
        """The water levels of the chosen stations, as the parameters ask."""
        read = await asyncio.gather(*(deps.read_series(self.store, self.items, feature) for feature in chosen))
        many = [edr.StationSeries(s.feature, edr.within(s.rows, self.params.when)) for s in read]
        if self.params.media == CSV:
            return csv_response(edr.series_csv(many, self.params.names), name)
        if single:
            return CoverageJSONResponse(edr.coverage(many[0], self.params.names))
        return CoverageJSONResponse(edr.coverage_collection(many, self.params.names))


EdrData = Annotated[EdrQuery, Depends()]


EDR_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {COVJSON: {}, CSV: {}}}}


def edr_query(kind: str, summary: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The route of an EDR query of the stations collection (position, area), with its parameters checked."""
    return edr_router.get(
        f"/collections/{{collection_id}}/{kind}",
        summary=summary,
        response_class=CoverageJSONResponse,
        responses=EDR_RESPONSES,
        dependencies=[Depends(deps.only(*EDR_PARAMS))],
    )


@edr_query("position", "Water levels of the stations at a position")
async def position(
    query: EdrData, coords: Annotated[str, Query(description="WKT POINT(lon lat) or MULTIPOINT, CRS84")]
) -> Response:
    config = query.config
    where = parse_coords(coords, ("Point", "MultiPoint"), config.limits)
    return await query.answer(_bounded(edr.near(query.by_id(), where, config.position_tolerance), config))


@edr_query("area", "Water levels of the stations within an area")
async def area(
    query: EdrData, coords: Annotated[str, Query(description="WKT POLYGON or MULTIPOLYGON, CRS84")]
) -> Response:
    where = parse_coords(coords, ("Polygon", "MultiPolygon"), query.config.limits)
    return await query.answer(_bounded(edr.inside(query.by_id(), where), query.config))


@edr_router.get(
    "/collections/{collection_id}/locations",
    summary="The stations as named locations (GeoJSON)",
    response_class=GeoJSONResponse,
    dependencies=[Depends(deps.only("f", "bbox", "datetime"))],
)
def locations(
    request: Request,
    _: EdrCollection,
    features: Features,
    url: Annotated[str, Depends(deps.collection_url)],
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy (CRS84)", max_length=200)] = None,
    datetime_: Annotated[str | None, DATETIME] = None,
    f: Annotated[str | None, Query(description="json or geojson", max_length=20)] = None,
) -> Response:
    deps.output(f, request, {"json": GEOJSON, "geojson": GEOJSON}, GEOJSON)
    chosen = selected(features, parse_bbox(bbox), parse_datetime(datetime_), None)
    located = [
        {**c, "links": [{"rel": "data", "href": f"{url}/locations/{segment(c['id'])}", "type": COVJSON}]}
        for c in chosen
    ]
    return GeoJSONResponse({"type": "FeatureCollection", "features": located, "numberReturned": len(located)})


@edr_router.get(
    "/collections/{collection_id}/locations/{location_id}",
    summary="Water levels of one station: CoverageJSON (PointSeries) or CSV",
    response_class=CoverageJSONResponse,
    responses=EDR_RESPONSES,
    dependencies=[Depends(deps.only("f", "datetime", "parameter-name", "crs"))],
)
async def location(query: EdrData, location_id: Annotated[str, Path(pattern=STATION_ID)]) -> Response:
    found = _feature(query.features, location_id)
    return await query.answer([found], single=True, name=location_id)


ROUTERS = (common, features_router, edr_router)
RESPONSES = {
    f"GET /collections/{{collection_id}}/{path}": SERIES_ERRORS
    for path in ("position", "area", "locations/{location_id}", "items", "items/{feature_id}")
}
