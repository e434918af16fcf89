"""What the routes depend on, as FastAPI dependencies (swap them with `app.dependency_overrides` in tests): the
settings, the series store, the stations of the catalog, the query parameters a route accepts, the output format."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from eolake_timeseries.catalog import CatalogUnavailable, Stations
from eolake_timeseries.edr import StationSeries
from eolake_timeseries.features import COLLECTION, OBSERVATIONS, station_feature
from eolake_timeseries.hydroweb import Measurement
from eolake_timeseries.query import BadRequest
from eolake_timeseries.settings import TimeseriesSettings
from eolake_timeseries.store import SeriesError, SeriesStore


def settings(request: Request) -> TimeseriesSettings:
    return request.app.state.settings


def store(request: Request) -> SeriesStore:
    return request.app.state.store


def catalog_stations(request: Request) -> Stations:
    return request.app.state.stations


Settings = Annotated[TimeseriesSettings, Depends(settings)]


def collection_url(config: Settings) -> str:
    return f"{config.service_url}/collections/{COLLECTION}"


async def station_items(stations: Annotated[Stations, Depends(catalog_stations)]) -> dict[str, dict]:
    """The catalog's station items by id; 503 when the catalog cannot list them."""
    try:
        return await stations.all()
    except CatalogUnavailable as exc:
        raise HTTPException(503, f"stations are unavailable: {exc}", headers={"Retry-After": "10"}) from None


CatalogItems = Annotated[dict[str, dict], Depends(station_items)]


def the_collection(
    collection_id: Annotated[
        str,
        Path(
            max_length=100,
            json_schema_extra={"enum": [COLLECTION]},
            description="the collection with EDR queries: stations",
        ),
    ],
) -> str:
    if collection_id != COLLECTION:
        raise HTTPException(404, f"no collection {collection_id} with EDR queries; {COLLECTION} has them")
    return collection_id


def feature_collection(
    collection_id: Annotated[
        str,
        Path(
            max_length=100,
            json_schema_extra={"enum": [COLLECTION, OBSERVATIONS]},
            description="stations, or water-levels (one feature per measurement)",
        ),
    ],
) -> str:
    if collection_id not in (COLLECTION, OBSERVATIONS):
        raise HTTPException(404, f"no collection {collection_id}; this service has {COLLECTION} and {OBSERVATIONS}")
    return collection_id


async def features(items: CatalogItems, url: Annotated[str, Depends(collection_url)]) -> list[dict]:
    return [station_feature(item, url) for item in items.values()]


def refuse_unknown(request: Request, known: Iterable[str]) -> None:
    """400 for query parameters the route does not define."""
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        raise BadRequest(f"unknown query parameter {', '.join(unknown)}; this route takes {', '.join(sorted(known))}")


def only(*names: str) -> Callable[[Request], None]:
    """A dependency refusing (400) query parameters the route does not define."""

    def check(request: Request) -> None:
        refuse_unknown(request, names)

    return check


def output(f: str | None, request: Request, formats: dict[str, str], default: str) -> str:
    """The media type asked for: by `f` (one of `formats`' keys, any case), else by Accept, else `default`."""
    if f is not None:
        media = formats.get(f.lower())
        if media is None:
            raise BadRequest(f"f={f!r} is not offered here; one of {', '.join(formats)}")
        return media
    accept = request.headers.get("accept", "")
    return next((media for media in formats.values() if media != default and media in accept), default)


async def read_series(series: SeriesStore, items: dict[str, dict], feature: dict) -> StationSeries:
    """A station's measurements, read in a thread (files and S3 calls block); a SeriesError becomes its problem."""
    sid = feature["id"]
    href = items[sid].get("assets", {}).get("series", {}).get("href")
    try:
        rows: list[Measurement] = await asyncio.to_thread(series.read, href, sid)
    except SeriesError as exc:
        headers = {"Retry-After": "10"} if exc.status == 503 else None
        raise HTTPException(exc.status, str(exc), headers=headers) from None
    return StationSeries(feature, rows)
