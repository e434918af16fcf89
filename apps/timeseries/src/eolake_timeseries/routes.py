"""The routers: OGC API Common (landing page, conformance, collections), OGC API Features (stations, their
queryables) and OGC API EDR (water levels by position, area or station). A handler parses, calls the core,
answers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from starlette.responses import JSONResponse, Response

from eolake_kit.refs import segment
from eolake_timeseries import deps, documents, edr
from eolake_timeseries.deps import Items, Settings
from eolake_timeseries.features import COVJSON, CSV, GEOJSON, QUERYABLES, features_csv, page, selected, with_properties
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
EDR_PARAMS = ("f", "coords", "datetime", "parameter-name", "crs", "z")
PROPERTY_PARAMS = [name for name in QUERYABLES if name != "geometry"]
FORMAT = Query(description="output format: json/geojson or csv (else the Accept header decides)", max_length=20)
EDR_FORMAT = Query(description="output format: CoverageJSON or CSV (else the Accept header decides)", max_length=20)
DATETIME = Query(alias="datetime", max_length=100,
                 description="an RFC 3339 instant or date, or an interval start/end with .. for an open side")
PARAMETER_NAME = Query(alias="parameter-name", description="wse, wse_u or both (comma-separated)", max_length=100)
CRS = Query(description="only CRS84 (longitude, latitude)", max_length=100)
Collection = Annotated[str, Depends(deps.the_collection)]
Features = Annotated[list[dict], Depends(deps.features)]
Store = Annotated[SeriesStore, Depends(deps.store)]


class GeoJSONResponse(JSONResponse):
    media_type = GEOJSON


class CoverageJSONResponse(JSONResponse):
    media_type = COVJSON


def csv_response(text: str, name: str) -> Response:
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'inline; filename="{name}.csv"'})


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


@common.get("/collections/{collection_id}", summary="The stations collection: its items and EDR queries")
def collection(config: Settings, _: Collection, features: Features) -> dict:
    return documents.collection(config.service_url, features)


features_router = APIRouter(tags=["Features"])


@features_router.get("/collections/{collection_id}/queryables", summary="What a filter may refer to",
                     response_class=JSONResponse,
                     responses={200: {"content": {"application/schema+json": {}}}})
def queryables(config: Settings, _: Collection) -> Response:
    return JSONResponse(documents.queryables(config.service_url), media_type="application/schema+json")


def _links(request: Request, url: str, offset: int, limit: int, next_offset, prev_offset) -> list[dict]:
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "limit")]

    def at(where: int) -> str:
        return f"{url}/items?{urlencode([*params, ('limit', limit), ('offset', where)])}"

    links = [{"rel": "self", "href": at(offset), "type": GEOJSON},
             {"rel": "alternate", "href": at(offset) + "&f=csv", "type": CSV},
             {"rel": "collection", "href": url, "type": "application/json"}]
    if next_offset is not None:
        links.append({"rel": "next", "href": at(next_offset), "type": GEOJSON})
    if prev_offset is not None:
        links.append({"rel": "prev", "href": at(prev_offset), "type": GEOJSON})
    return links


@features_router.get(
    "/collections/{collection_id}/items", summary="Stations as GeoJSON or CSV: bbox, datetime, CQL2 filter, paging",
    response_class=GeoJSONResponse, dependencies=[Depends(deps.only(*ITEMS_PARAMS, also=PROPERTY_PARAMS))],
    responses={200: {"content": {GEOJSON: {}, CSV: {}}}})
def items(request: Request, config: Settings, _: Collection, features: Features,
          url: Annotated[str, Depends(deps.collection_url)],
          bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy (CRS84)", max_length=200)] = None,
          limit: Annotated[int, Query(ge=1, description="stations per page (capped to the platform's page size)")] = 10,
          offset: Annotated[int, Query(ge=0, le=1_000_000, description="stations skipped")] = 0,
          datetime_: Annotated[str | None, DATETIME] = None,
          filter_: Annotated[str | None, Query(alias="filter", description="a CQL2 filter on the queryables")] = None,
          filter_lang: Annotated[str | None, Query(alias="filter-lang", max_length=20)] = None,
          filter_crs: Annotated[str | None, Query(alias="filter-crs", max_length=100)] = None,
          bbox_crs: Annotated[str | None, Query(alias="bbox-crs", max_length=100)] = None,
          f: Annotated[str | None, FORMAT] = None) -> Response:
    media = deps.output(f, request, FEATURE_FORMATS, GEOJSON)
    parse_crs(filter_crs, "filter-crs")
    parse_crs(bbox_crs, "bbox-crs")
    expression = parse_filter(filter_, filter_lang, set(QUERYABLES), config.limits)
    equal = {name: value for name, value in request.query_params.items() if name in QUERYABLES}
    chosen = with_properties(selected(features, parse_bbox(bbox), parse_datetime(datetime_), expression), equal)
    limit = min(limit, config.limits.page_size)
    shown = page(chosen, offset, limit)
    if media == CSV:
        return csv_response(features_csv(shown.features), "stations")
    return GeoJSONResponse({
        "type": "FeatureCollection", "features": shown.features, "numberMatched": shown.matched,
        "numberReturned": len(shown.features), "timeStamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "links": _links(request, url, offset, limit, shown.next_offset, shown.prev_offset)})


def _feature(features: list[dict], feature_id: str) -> dict:
    found = next((f for f in features if f["id"] == feature_id), None)
    if found is None:
        raise HTTPException(404, f"no station {feature_id}")
    return found


@features_router.get("/collections/{collection_id}/items/{feature_id}", summary="One station",
                     response_class=GeoJSONResponse, dependencies=[Depends(deps.only("f"))],
                     responses={200: {"content": {GEOJSON: {}, CSV: {}}}})
def item(request: Request, _: Collection, features: Features,
         feature_id: Annotated[str, Path(pattern=STATION_ID)], f: Annotated[str | None, FORMAT] = None) -> Response:
    media = deps.output(f, request, FEATURE_FORMATS, GEOJSON)
    found = _feature(features, feature_id)
    if media == CSV:
        return csv_response(features_csv([found]), feature_id)
    return GeoJSONResponse(found)


edr_router = APIRouter(tags=["Environmental data retrieval"])
SERIES_ERRORS = {404: "no such station or series", 502: "the series file is malformed or too large",
                 503: "the catalog or the storage is unavailable"}


async def _answer(request: Request, store: Store, items: dict[str, dict], chosen: list[dict], *,
                  when: str | None, names: str | None, crs: str | None, f: str | None, single: bool = False,
                  name: str = "water-levels") -> Response:
    """The water levels of the chosen stations, within `when`, of the parameters named, as asked."""
    media = deps.output(f, request, EDR_FORMATS, COVJSON)
    parse_crs(crs)
    interval = parse_datetime(when)
    wanted = parse_names(names, edr.PARAMETERS, "parameter-name")
    read = await asyncio.gather(*(deps.read_series(store, items, feature) for feature in chosen))
    many = [edr.StationSeries(s.feature, edr.within(s.rows, interval)) for s in read]
    if media == CSV:
        return csv_response(edr.series_csv(many, wanted), name)
    if single:
        return CoverageJSONResponse(edr.coverage(many[0], wanted))
    return CoverageJSONResponse(edr.coverage_collection(many, wanted))


def _bounded(chosen: list[dict], config) -> list[dict]:
    if len(chosen) > config.max_query_stations:
        raise BadRequest(f"the query selects {len(chosen)} stations, more than {config.max_query_stations}; "
                         "narrow it")
    return chosen


EDR_RESPONSES = {200: {"content": {COVJSON: {}, CSV: {}}}}


@edr_router.get("/collections/{collection_id}/position", summary="Water levels of the stations at a position",
                response_class=CoverageJSONResponse, responses=EDR_RESPONSES,
                dependencies=[Depends(deps.only(*EDR_PARAMS))])
async def position(request: Request, config: Settings, _: Collection, features: Features, items: Items,
                   store: Store,
                   coords: Annotated[str, Query(description="WKT POINT(lon lat) or MULTIPOINT, CRS84")],
                   datetime_: Annotated[str | None, DATETIME] = None,
                   parameter_name: Annotated[str | None, PARAMETER_NAME] = None,
                   crs: Annotated[str | None, CRS] = None, f: Annotated[str | None, EDR_FORMAT] = None) -> Response:
    where = parse_coords(coords, ("Point", "MultiPoint"), config.limits)
    chosen = _bounded(edr.near(sorted(features, key=lambda s: s["id"]), where, config.position_tolerance), config)
    return await _answer(request, store, items, chosen, when=datetime_,
                         names=parameter_name, crs=crs, f=f)


@edr_router.get("/collections/{collection_id}/area", summary="Water levels of the stations within an area",
                response_class=CoverageJSONResponse, responses=EDR_RESPONSES,
                dependencies=[Depends(deps.only(*EDR_PARAMS))])
async def area(request: Request, config: Settings, _: Collection, features: Features, items: Items, store: Store,
               coords: Annotated[str, Query(description="WKT POLYGON or MULTIPOLYGON, CRS84")],
               datetime_: Annotated[str | None, DATETIME] = None,
               parameter_name: Annotated[str | None, PARAMETER_NAME] = None,
               crs: Annotated[str | None, CRS] = None, f: Annotated[str | None, EDR_FORMAT] = None) -> Response:
    where = parse_coords(coords, ("Polygon", "MultiPolygon"), config.limits)
    chosen = _bounded(edr.inside(sorted(features, key=lambda s: s["id"]), where), config)
    return await _answer(request, store, items, chosen, when=datetime_,
                         names=parameter_name, crs=crs, f=f)


@edr_router.get("/collections/{collection_id}/locations", summary="The stations as named locations (GeoJSON)",
                response_class=GeoJSONResponse, dependencies=[Depends(deps.only("f", "bbox", "datetime"))])
def locations(request: Request, _: Collection, features: Features,
              url: Annotated[str, Depends(deps.collection_url)],
              bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy (CRS84)", max_length=200)] = None,
              datetime_: Annotated[str | None, DATETIME] = None,
              f: Annotated[str | None, Query(description="json or geojson", max_length=20)] = None) -> Response:
    deps.output(f, request, {"json": GEOJSON, "geojson": GEOJSON}, GEOJSON)
    chosen = selected(features, parse_bbox(bbox), parse_datetime(datetime_), None)
    located = [{**c, "links": [{"rel": "data", "href": f"{url}/locations/{segment(c['id'])}", "type": COVJSON}]}
               for c in chosen]
    return GeoJSONResponse({"type": "FeatureCollection", "features": located, "numberReturned": len(located)})


@edr_router.get("/collections/{collection_id}/locations/{location_id}",
                summary="Water levels of one station: CoverageJSON (PointSeries) or CSV",
                response_class=CoverageJSONResponse, responses=EDR_RESPONSES,
                dependencies=[Depends(deps.only("f", "datetime", "parameter-name", "crs"))])
async def location(request: Request, _: Collection, features: Features, items: Items, store: Store,
                   location_id: Annotated[str, Path(pattern=STATION_ID)],
                   datetime_: Annotated[str | None, DATETIME] = None,
                   parameter_name: Annotated[str | None, PARAMETER_NAME] = None,
                   crs: Annotated[str | None, CRS] = None, f: Annotated[str | None, EDR_FORMAT] = None) -> Response:
    found = _feature(features, location_id)
    return await _answer(request, store, items, [found], when=datetime_,
                         names=parameter_name, crs=crs, f=f, single=True, name=location_id)


ROUTERS = (common, features_router, edr_router)
RESPONSES = {f"GET /collections/{{collection_id}}/{path}": SERIES_ERRORS
             for path in ("position", "area", "locations/{location_id}")}
