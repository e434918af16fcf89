"""Stations as OGC API Features: the catalog's station items as features with the properties hydrology users
query (name, river, basin, start_time, end_time, measurements), selected by bbox, datetime and a CQL2 filter,
paged, written as GeoJSON or CSV. No web framework here."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from eolake_kit.refs import segment
from eolake_timeseries.query import Filter, Interval, in_bbox, instant, matches

GEOJSON = "application/geo+json"
COVJSON = "application/prs.coverage+json"
CSV = "text/csv"
COLLECTION = "stations"
CSV_COLUMNS = ("id", "name", "river", "basin", "longitude", "latitude", "start_time", "end_time", "measurements",
               "unit", "reference")
QUERYABLES = {
    "id": {"type": "string", "title": "station identifier"},
    "name": {"type": "string", "title": "station name"},
    "river": {"type": "string", "title": "river"},
    "basin": {"type": "string", "title": "basin"},
    "start_time": {"type": "string", "format": "date-time", "title": "first measurement"},
    "end_time": {"type": "string", "format": "date-time", "title": "last measurement"},
    "measurements": {"type": "integer", "title": "number of measurements"},
    "geometry": {"format": "geometry-point", "title": "station location (CRS84)"},
}


def station_feature(item: dict, collection_url: str) -> dict:
    """A catalog station item as the feature this API serves, with links to itself and to its water levels."""
    props = item.get("properties", {})
    sid = item["id"]
    here = f"{collection_url}/items/{segment(sid)}"
    series = f"{collection_url}/locations/{segment(sid)}"
    return {
        "type": "Feature", "id": sid, "geometry": item["geometry"],
        "properties": {
            "name": props.get("title") or sid, "river": props.get("river"), "basin": props.get("basin"),
            "start_time": props.get("start_datetime"), "end_time": props.get("end_datetime"),
            "measurements": props.get("measurements"), "unit": props.get("unit", "m"),
            "reference": props.get("geoid", "EGM2008"),
        },
        "links": [
            {"rel": "self", "href": here, "type": GEOJSON},
            {"rel": "collection", "href": collection_url, "type": "application/json"},
            {"rel": "data", "href": series, "type": COVJSON, "title": "water levels (CoverageJSON)"},
            {"rel": "alternate", "href": f"{series}?f=csv", "type": CSV, "title": "water levels (CSV)"},
        ],
    }


def _time(value: object) -> datetime | None:
    return instant(value) if isinstance(value, str) and value else None


def selected(features: Iterable[dict], box: tuple[float, float, float, float] | None, when: Interval,
             expression: Filter | None) -> list[dict]:
    """The features in the box, whose [start_time, end_time] meets `when`, matching the filter; by id."""
    chosen = []
    for feature in features:
        lon, lat = feature["geometry"]["coordinates"][:2]
        props = feature["properties"]
        if box is not None and not in_bbox(lon, lat, box):
            continue
        if not when.meets(_time(props["start_time"]), _time(props["end_time"])):
            continue
        if matches(expression, feature):
            chosen.append(feature)
    return sorted(chosen, key=lambda f: f["id"])


def with_properties(features: list[dict], equal: dict[str, str]) -> list[dict]:
    """The features whose properties (or id) equal the values given as query parameters (`river=GARONNE`)."""
    def value(feature: dict, name: str) -> str:
        found = feature["id"] if name == "id" else feature["properties"].get(name)
        return "" if found is None else str(found)

    return [f for f in features if all(value(f, name) == wanted for name, wanted in equal.items())]


class Page(NamedTuple):
    features: list[dict]
    matched: int
    next_offset: int | None
    prev_offset: int | None


def page(features: list[dict], offset: int, limit: int) -> Page:
    shown = features[offset:offset + limit]
    after = offset + limit if offset + limit < len(features) else None
    before = max(0, offset - limit) if offset > 0 else None
    return Page(shown, len(features), after, before)


def features_csv(features: Iterable[dict]) -> str:
    """One row per station: CSV_COLUMNS (longitude and latitude from the geometry)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for feature in features:
        lon, lat = feature["geometry"]["coordinates"][:2]
        props = {**feature["properties"], "id": feature["id"], "longitude": lon, "latitude": lat}
        writer.writerow(["" if props.get(c) is None else props[c] for c in CSV_COLUMNS])
    return out.getvalue()
