"""Hydrology virtual stations and their water-level series.

Stations are STAC items of the catalog (read over HTTP, kept briefly); a station's series is the hydroweb text
its `series` asset points at, read only from the platform's storage: a file below the storage directory, or (storage
kind s3) an object of the storage bucket (eolake_timeseries.store).
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Literal

import httpx
from fastapi import FastAPI, HTTPException, Path, Query, Request
from starlette.responses import JSONResponse, Response

from eolake_kit import install_kit
from eolake_kit.outbound import async_client
from eolake_kit.refs import segment
from eolake_timeseries.hydroweb import Measurement
from eolake_timeseries.settings import TimeseriesSettings
from eolake_timeseries.store import S3Series, SeriesError, SeriesStore, series_store

GEOJSON = "application/geo+json"
STATION_ID = r"^[A-Za-z0-9._-]{1,100}$"


class GeoJSONResponse(JSONResponse):
    media_type = GEOJSON


class CatalogUnavailable(Exception):
    """The catalog did not answer (or answered nonsense): stations cannot be listed."""


class Stations:
    """The station items of the catalog, kept for `ttl` seconds; one refresh at a time."""

    def __init__(self, settings: TimeseriesSettings, client: httpx.AsyncClient):
        self.settings, self.client = settings, client
        self.items: dict[str, dict] | None = None
        self.fetched = 0.0
        self.lock = asyncio.Lock()

    async def all(self) -> dict[str, dict]:
        if self.items is not None and time.monotonic() - self.fetched < self.settings.cache_ttl:
            return self.items
        async with self.lock:
            if self.items is not None and time.monotonic() - self.fetched < self.settings.cache_ttl:
                return self.items
            self.items = await self._fetch()
            self.fetched = time.monotonic()
            return self.items

    async def _fetch(self) -> dict[str, dict]:
        catalog = self.settings.catalog
        url: str | None = f"{catalog.url}/collections/{self.settings.stations_collection}/items?limit=500"
        items: dict[str, dict] = {}
        for _ in range(self.settings.max_pages):
            if url is None:
                break
            try:
                response = await self.client.get(url)
            except httpx.HTTPError as exc:
                raise CatalogUnavailable(f"catalog unreachable: {type(exc).__name__}") from None
            if response.status_code == 404:
                return items  # no stations collection (yet): an empty list, not an outage
            if response.status_code != 200:
                raise CatalogUnavailable(f"catalog answered {response.status_code}")
            try:
                page = response.json()
                for feature in page.get("features", []):
                    if feature.get("geometry", {}).get("type") == "Point":
                        items[feature["id"]] = feature
            except (ValueError, KeyError, AttributeError, TypeError):
                raise CatalogUnavailable("catalog answered something that is not a STAC item collection") from None
            url = next((catalog.internal(str(link.get("href"))) for link in page.get("links", [])
                        if link.get("rel") == "next" and link.get("method", "GET") == "GET"), None)
        return items


def _bbox(value: str | None) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        minx, miny, maxx, maxy = (float(v) for v in value.split(","))
    except ValueError:
        raise HTTPException(400, "bbox must be minx,miny,maxx,maxy (four numbers)") from None
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise HTTPException(400, "bbox must satisfy -180 ≤ minx ≤ maxx ≤ 180 and -90 ≤ miny ≤ maxy ≤ 90")
    return minx, miny, maxx, maxy


async def read_series(store: SeriesStore, href: object, station: str) -> list[Measurement]:
    """The station's measurements, read in a thread (files and S3 calls block); a SeriesError becomes its problem."""
    try:
        return await asyncio.to_thread(store.read, href, station)
    except SeriesError as exc:
        headers = {"Retry-After": "10"} if exc.status == 503 else None
        raise HTTPException(exc.status, str(exc), headers=headers) from None


def _iso(when) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def create_app(settings: TimeseriesSettings | None = None) -> FastAPI:
    settings = settings or TimeseriesSettings()
    store = series_store(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with async_client([settings.catalog.url], timeout=settings.catalog_timeout,
                                headers={"Accept": "application/geo+json, application/json"}) as client:
            app.state.stations = Stations(settings, client)
            app.state.http = client
            yield

    app = FastAPI(title="eolake time series", version="0.1.0", lifespan=lifespan, openapi_url="/api",
                  docs_url="/api.html",
                  description="Hydrology virtual stations (GeoJSON) and their water-level series (JSON, CSV)")

    def feature(item: dict) -> dict:
        props = item.get("properties", {})
        sid = item["id"]
        return {
            "type": "Feature", "id": sid, "geometry": item["geometry"],
            "properties": {
                "name": props.get("title") or sid, "river": props.get("river"), "basin": props.get("basin"),
                "start": props.get("start_datetime"), "end": props.get("end_datetime"),
                "count": props.get("measurements"), "unit": props.get("unit", "m"),
                "series_url": f"{settings.service_url}/stations/{segment(sid)}/series",
            },
        }

    async def all_stations(request: Request) -> dict[str, dict]:
        try:
            return await request.app.state.stations.all()
        except CatalogUnavailable as exc:
            raise HTTPException(503, f"stations are unavailable: {exc}", headers={"Retry-After": "10"}) from None

    async def station(request: Request, station_id: str) -> dict:
        item = (await all_stations(request)).get(station_id)
        if item is None:
            raise HTTPException(404, f"no station {station_id}")
        return item

    @app.get("/", tags=["Landing"], summary="What this service offers")
    def landing() -> dict:
        base = settings.service_url
        return {"title": "eolake time series", "links": [
            {"rel": "data", "href": f"{base}/stations", "type": GEOJSON},
            {"rel": "service-desc", "href": f"{base}/api", "type": "application/vnd.oai.openapi+json;version=3.0"},
            {"rel": "service-doc", "href": f"{base}/api.html", "type": "text/html"}]}

    @app.get("/stations", tags=["Stations"], summary="Virtual stations as GeoJSON, optionally within a bbox",
             response_class=GeoJSONResponse)
    async def stations(request: Request, bbox: Annotated[str | None, Query(
            description="minx,miny,maxx,maxy (WGS84)", max_length=200)] = None) -> Response:
        box = _bbox(bbox)
        features = []
        for item in (await all_stations(request)).values():
            lon, lat = item["geometry"]["coordinates"][:2]
            if box is None or (box[0] <= lon <= box[2] and box[1] <= lat <= box[3]):
                features.append(feature(item))
        features.sort(key=lambda f: f["id"])
        return GeoJSONResponse({"type": "FeatureCollection", "features": features, "numberReturned": len(features)})

    @app.get("/stations/{station_id}", tags=["Stations"], summary="One virtual station",
             response_class=GeoJSONResponse)
    async def one_station(request: Request, station_id: Annotated[str, Path(pattern=STATION_ID)]) -> Response:
        return GeoJSONResponse(feature(await station(request, station_id)))

    @app.get("/stations/{station_id}/series", tags=["Stations"],
             summary="Water-level series (m above EGM2008) with uncertainty, as JSON or CSV",
             responses={200: {"content": {"application/json": {}, "text/csv": {}}}})
    async def series(request: Request, station_id: Annotated[str, Path(pattern=STATION_ID)],
                     start: Annotated[date | None, Query(description="first day, YYYY-MM-DD")] = None,
                     end: Annotated[date | None, Query(description="last day, YYYY-MM-DD (included)")] = None,
                     format: Annotated[Literal["json", "csv"] | None, Query()] = None) -> Response:
        if start and end and start > end:
            raise HTTPException(400, "start is after end")
        item = await station(request, station_id)
        href = item.get("assets", {}).get("series", {}).get("href")
        rows = await read_series(store, href, station_id)
        rows = [m for m in rows if (start is None or m.time.date() >= start) and (end is None or m.time.date() <= end)]
        wants_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
        if wants_csv:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["time", "height_m", "uncertainty_m"])
            writer.writerows([_iso(m.time), f"{m.height:.3f}", f"{m.uncertainty:.2f}"] for m in rows)
            return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'inline; filename="{station_id}.csv"'})
        reference = item.get("properties", {}).get("geoid", "EGM2008")
        return JSONResponse({"station": station_id, "unit": "m", "reference": reference,
                             "points": [{"time": _iso(m.time), "height": m.height, "uncertainty": m.uncertainty}
                                        for m in rows]})

    async def catalog() -> None:
        response = await app.state.http.get(f"{settings.catalog.url}/")
        if response.status_code != 200:
            raise CatalogUnavailable(f"catalog answered {response.status_code}")

    checks = {"catalog": catalog}
    if isinstance(store, S3Series):
        async def storage() -> None:
            await asyncio.to_thread(store.ready)

        checks["storage"] = storage
    return install_kit(app, settings, checks=checks, status_codes={CatalogUnavailable: 503})
