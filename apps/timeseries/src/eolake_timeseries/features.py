"""Two OGC API Features collections: `stations` (the catalog's station items, with the properties hydrology users
query: name, river, basin, start_time, end_time, measurements) and `water-levels` (one feature per measurement:
name, start_time, wse, wse_u, as the hydrology portal's WFS layer served them); features selected by bbox,
datetime, queryables and a CQL2 filter, paged, written as GeoJSON or CSV. No web framework here."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from eolake_kit.refs import segment
from eolake_timeseries.hydroweb import Measurement
from eolake_timeseries.query import Filter, Interval, in_bbox, instant, matches

GEOJSON = "application/geo+json"
COVJSON = "application/prs.coverage+json"
CSV = "text/csv"
COLLECTION = "stations"
OBSERVATIONS = "water-levels"
CSV_COLUMNS = (
    "id",
    "name",
    "river",
    "basin",
    "longitude",
    "latitude",
    "start_time",
    "end_time",
    "measurements",
    "unit",
    "reference",
)
OBSERVATION_COLUMNS = ("name", "start_time", "wse", "wse_u", "station", "river", "longitude", "latitude", "id")
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
OBSERVATION_QUERYABLES = {
    "id": {"type": "string", "title": "measurement identifier (station_yyyymmddThhmmss)"},
    "station": {"type": "string", "title": "station identifier"},
    "name": {"type": "string", "title": "station name"},
    "river": {"type": "string", "title": "river"},
    "basin": {"type": "string", "title": "basin"},
    "start_time": {"type": "string", "format": "date-time", "title": "time of the measurement"},
    "wse": {"type": "number", "title": "water surface elevation (m above EGM2008)"},
    "wse_u": {"type": "number", "title": "uncertainty of the water surface elevation (m)"},
    "geometry": {"format": "geometry-point", "title": "station location (CRS84)"},
}
STAMP = "%Y%m%dT%H%M%S"


def station_feature(item: dict[str, Any], collection_url: str) -> dict[str, Any]:
    """A catalog station item as the feature this API serves, with links to itself and to its water levels."""
    props = item.get("properties", {})
    sid = item["id"]
    here = f"{collection_url}/items/{segment(sid)}"
    series = f"{collection_url}/locations/{segment(sid)}"
    return {
        "type": "Feature",
        "id": sid,
        "geometry": item["geometry"],
        "properties": {
            "name": props.get("title") or sid,
            "river": props.get("river"),
            "basin": props.get("basin"),
            "start_time": props.get("start_datetime"),
            "end_time": props.get("end_datetime"),
            "measurements": props.get("measurements"),
            "unit": props.get("unit", "m"),
            "reference": props.get("geoid", "EGM2008"),
        },
        "links": [
            {"rel": "self", "href": here, "type": GEOJSON},
            {"rel": "collection", "href": collection_url, "type": "application/json"},
            {"rel": "data", "href": series, "type": COVJSON, "title": "water levels (CoverageJSON)"},
            {"rel": "alternate", "href": f"{series}?f=csv", "type": CSV, "title": "water levels (CSV)"},
        ],
    }


def observation_id(station: str, measurement: Measurement) -> str:
    return f"{station}_{measurement.time.strftime(STAMP)}"


def observation_features(station: dict[str, Any], rows: list[Measurement], url: str) -> list[dict[str, Any]]:
    """One station's measurements as features of the water-levels collection (at `url`)."""
    props = station["properties"]
    shared = {
        "station": station["id"],
        "name": props["name"],
        "river": props["river"],
        "basin": props["basin"],
        "unit": props["unit"],
        "reference": props["reference"],
    }
    features = []
    for m in rows:
        fid = observation_id(station["id"], m)
        features.append(
            {
                "type": "Feature",
                "id": fid,
                "geometry": station["geometry"],
                "properties": {
                    **shared,
                    "start_time": m.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "wse": m.height,
                    "wse_u": m.uncertainty,
                },
                "links": [
                    {"rel": "self", "href": f"{url}/items/{segment(fid)}", "type": GEOJSON},
                    {"rel": "collection", "href": url, "type": "application/json"},
                ],
            }
        )
    return features


def _time(value: object) -> datetime | None:
    return instant(value) if isinstance(value, str) and value else None


def selected(
    features: Iterable[dict[str, Any]],
    box: tuple[float, float, float, float] | None,
    when: Interval,
    expression: Filter | None,
) -> list[dict[str, Any]]:
    """The features in the box, whose [start_time, end_time] meets `when`, matching the filter; by id."""
    chosen = []
    for feature in features:
        lon, lat = feature["geometry"]["coordinates"][:2]
        props = feature["properties"]
        if box is not None and not in_bbox(lon, lat, box):
            continue
        start = _time(props["start_time"])
        if not when.meets(start, _time(props["end_time"]) if "end_time" in props else start):
            continue
        if matches(expression, feature):
            chosen.append(feature)
    return sorted(chosen, key=lambda f: f["id"])


def with_properties(features: list[dict[str, Any]], equal: dict[str, str]) -> list[dict[str, Any]]:
    """The features whose properties (or id) equal the values given as query parameters (`river=GARONNE`)."""

    def value(feature: dict[str, Any], name: str) -> str:
        found = feature["id"] if name == "id" else feature["properties"].get(name)
        return "" if found is None else str(found)

    return [f for f in features if all(value(f, name) == wanted for name, wanted in equal.items())]


class Page(NamedTuple):
    features: list[dict[str, Any]]
    matched: int
    next_offset: int | None
    prev_offset: int | None


def page(features: list[dict[str, Any]], offset: int, limit: int) -> Page:
    shown = features[offset : offset + limit]
    after = offset + limit if offset + limit < len(features) else None
    before = max(0, offset - limit) if offset > 0 else None
    return Page(shown, len(features), after, before)


def features_csv(features: Iterable[dict[str, Any]], columns: tuple[str, ...] = CSV_COLUMNS) -> str:
    """One row per feature: its `columns` (longitude and latitude from the geometry)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for feature in features:
        lon, lat = feature["geometry"]["coordinates"][:2]
        props = {**feature["properties"], "id": feature["id"], "longitude": lon, "latitude": lat}
        writer.writerow(["" if props.get(c) is None else props[c] for c in columns])
    return out.getvalue()
