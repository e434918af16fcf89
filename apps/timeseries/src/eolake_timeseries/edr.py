"""Water levels as OGC API EDR answers: the stations a position or an area query selects, and their series as
CoverageJSON (a PointSeries coverage per station) or CSV (`name, start_time, wse, wse_u` rows). No web framework
here."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any, NamedTuple

from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from eolake_timeseries.hydroweb import Measurement
from eolake_timeseries.query import CRS84, Interval

METRE = {"label": {"en": "metre"}, "symbol": {"value": "m", "type": "http://www.opengis.net/def/uom/UCUM/"}}
PARAMETERS = {
    "wse": {
        "type": "Parameter",
        "description": {"en": "Water surface elevation above the geoid (EGM2008)"},
        "unit": METRE,
        "observedProperty": {"label": {"en": "Water surface elevation"}},
    },
    "wse_u": {
        "type": "Parameter",
        "description": {"en": "Uncertainty of the water surface elevation (1 sigma)"},
        "unit": METRE,
        "observedProperty": {"label": {"en": "Water surface elevation uncertainty"}},
    },
}
CSV_DIGITS = {"wse": 3, "wse_u": 2}
REFERENCING = [
    {"coordinates": ["x", "y"], "system": {"type": "GeographicCRS", "id": CRS84}},
    {"coordinates": ["t"], "system": {"type": "TemporalRS", "calendar": "Gregorian"}},
]


class StationSeries(NamedTuple):
    feature: dict[str, Any]  # the station as a feature (features.station_feature)
    rows: list[Measurement]


def iso(measurement: Measurement) -> str:
    return measurement.time.strftime("%Y-%m-%dT%H:%M:%SZ")


def near(features: Iterable[dict[str, Any]], geometry: BaseGeometry, tolerance: float) -> list[dict[str, Any]]:
    """The stations within `tolerance` degrees of a position (a point or each point of a multipoint)."""
    return [f for f in features if Point(f["geometry"]["coordinates"][:2]).distance(geometry) <= tolerance]


def inside(features: Iterable[dict[str, Any]], area: BaseGeometry) -> list[dict[str, Any]]:
    """The stations an area (a polygon or multipolygon) covers, its boundary included."""
    return [f for f in features if area.covers(Point(f["geometry"]["coordinates"][:2]))]


def within(rows: list[Measurement], when: Interval) -> list[Measurement]:
    return [m for m in rows if when.holds(m.time)]


def values(rows: list[Measurement], name: str) -> list[float]:
    return [m.height if name == "wse" else m.uncertainty for m in rows]


def coverage(series: StationSeries, names: list[str], standalone: bool = True) -> dict[str, Any]:
    """One station's series as a CoverageJSON PointSeries coverage (with its parameters when `standalone`)."""
    lon, lat = series.feature["geometry"]["coordinates"][:2]
    document = {
        "type": "Coverage",
        "id": series.feature["id"],
        "domain": {
            "type": "Domain",
            "domainType": "PointSeries",
            "axes": {"x": {"values": [lon]}, "y": {"values": [lat]}, "t": {"values": [iso(m) for m in series.rows]}},
            "referencing": REFERENCING,
        },
        "ranges": {
            name: {
                "type": "NdArray",
                "dataType": "float",
                "axisNames": ["t"],
                "shape": [len(series.rows)],
                "values": values(series.rows, name),
            }
            for name in names
        },
        "eolake:station": {
            "name": series.feature["properties"]["name"],
            "reference": series.feature["properties"]["reference"],
        },
    }
    if standalone:
        document["parameters"] = {name: PARAMETERS[name] for name in names}
    return document


def coverage_collection(many: list[StationSeries], names: list[str]) -> dict[str, Any]:
    return {
        "type": "CoverageCollection",
        "domainType": "PointSeries",
        "parameters": {name: PARAMETERS[name] for name in names},
        "referencing": REFERENCING,
        "coverages": [coverage(s, names, standalone=False) for s in many],
    }


def series_csv(many: Iterable[StationSeries], names: list[str]) -> str:
    """One row per measurement: id, name, longitude, latitude, start_time and the parameters asked for."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "name", "longitude", "latitude", "start_time", *names])
    for series in many:
        lon, lat = series.feature["geometry"]["coordinates"][:2]
        head = [series.feature["id"], series.feature["properties"]["name"], lon, lat]
        for m in series.rows:
            measured = {"wse": m.height, "wse_u": m.uncertainty}
            writer.writerow([*head, iso(m), *(f"{measured[n]:.{CSV_DIGITS[n]}f}" for n in names)])
    return out.getvalue()
