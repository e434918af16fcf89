"""The query parameters of the OGC APIs, parsed without the web framework: each parser returns a value or raises
`BadRequest` naming the parameter and what is wrong (the routers answer it as a 400 problem)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Any, NamedTuple

import cql2
import shapely
from shapely import wkt
from shapely.errors import ShapelyError
from shapely.geometry.base import BaseGeometry

from eolake_kit.bounds import OutOfBounds, check_cql2
from eolake_spec import Limits

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CRS84_NAMES = {CRS84, "CRS84", "OGC:CRS84", "[OGC:CRS84]"}


class BadRequest(ValueError):
    """A query parameter the API cannot answer (HTTP 400)."""


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _library_error(exc: BaseException) -> bool:
    """An error of the cql2 library: its own exceptions, or a panic of its Rust core (not an Exception)."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


class Interval(NamedTuple):
    """A closed time interval; None is open on that side."""

    start: datetime | None
    end: datetime | None

    def holds(self, when: datetime) -> bool:
        return (self.start is None or self.start <= when) and (self.end is None or when <= self.end)

    def meets(self, start: datetime | None, end: datetime | None) -> bool:
        """Does [start, end] (None: open) intersect this interval?"""
        return (self.start is None or end is None or self.start <= end) and (
            self.end is None or start is None or start <= self.end
        )


def instant(text: str, *, end: bool = False) -> datetime:
    """An RFC 3339 date-time (`t`/`z` in either case; no offset is UTC), or a date: its first instant, or with
    `end` its last (a date as the end of an interval includes the whole day)."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = datetime.fromisoformat(value).date()
            moment = datetime.combine(day, time.min, UTC)
            return moment + timedelta(days=1, microseconds=-1) if end else moment
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"datetime {text!r} is not an RFC 3339 date-time or date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_datetime(value: str | None) -> Interval:
    """`datetime`: an instant, or `start/end` with `..` (or nothing) for an open side."""
    if value is None:
        return Interval(None, None)
    parts = value.split("/")
    if len(parts) == 1:
        if len(value.strip()) == 10:
            return Interval(instant(value), instant(value, end=True))
        moment = instant(value)
        return Interval(moment, moment)
    if len(parts) != 2 or all(p.strip() in ("", "..") for p in parts):
        raise BadRequest(f"datetime {value!r} is not an instant or an interval start/end (.. for an open side)")
    start = None if parts[0].strip() in ("", "..") else instant(parts[0])
    end = None if parts[1].strip() in ("", "..") else instant(parts[1], end=True)
    if start and end and start > end:
        raise BadRequest(f"datetime {value!r} starts after it ends")
    return Interval(start, end)


def parse_bbox(value: str | None) -> tuple[float, float, float, float] | None:
    """`bbox`: four numbers (or six, with heights that are ignored) in CRS84."""
    if value is None:
        return None
    try:
        numbers = [float(v) for v in value.split(",")]
    except ValueError:
        raise BadRequest("bbox must be minx,miny,maxx,maxy (four numbers, or six with heights)") from None
    if len(numbers) not in (4, 6):
        raise BadRequest("bbox must be minx,miny,maxx,maxy (four numbers, or six with heights)")
    half = len(numbers) // 2
    minx, miny, maxx, maxy = numbers[0], numbers[1], numbers[half], numbers[half + 1]
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise BadRequest("bbox must satisfy -180 ≤ minx, maxx ≤ 180 and -90 ≤ miny ≤ maxy ≤ 90")
    return minx, miny, maxx, maxy


def in_bbox(lon: float, lat: float, box: tuple[float, float, float, float]) -> bool:
    """Is the point in the box? A box whose minx is east of its maxx crosses the antimeridian."""
    minx, miny, maxx, maxy = box
    inside_x = minx <= lon <= maxx if minx <= maxx else (lon >= minx or lon <= maxx)
    return inside_x and miny <= lat <= maxy


def parse_crs(value: str | None, name: str = "crs") -> None:
    if value is not None and value.strip() not in CRS84_NAMES:
        raise BadRequest(f"{name} {value!r} is not supported; only {CRS84} (longitude, latitude)")


def parse_coords(value: str, kinds: tuple[str, ...], limits: Limits) -> BaseGeometry:
    """`coords`: well-known text of one of `kinds`, longitudes and latitudes in range, at most the platform's
    geometry_vertices positions."""
    if len(value) > limits.cql2_length:
        raise BadRequest(f"coords exceeds {limits.cql2_length} characters")
    try:
        geometry = wkt.loads(value)
    except (ShapelyError, ValueError, TypeError) as exc:
        raise BadRequest(f"coords is not well-known text: {str(exc)[:200]}") from None
    if geometry.geom_type not in kinds:
        raise BadRequest(
            f"coords must be a {' or a '.join(k.upper() for k in kinds)} in well-known text, "
            f"not a {geometry.geom_type.upper()}"
        )
    if geometry.is_empty:
        raise BadRequest("coords is empty")
    points = shapely.get_coordinates(geometry)
    if len(points) > limits.geometry_vertices:
        raise BadRequest(f"coords exceeds {limits.geometry_vertices} positions")
    if not all(-180 <= x <= 180 and -90 <= y <= 90 for x, y in points):
        raise BadRequest("coords must be longitudes within [-180, 180] and latitudes within [-90, 90]")
    if not geometry.is_valid:
        raise BadRequest(f"coords is not a valid geometry: {shapely.is_valid_reason(geometry)}")
    return geometry


def parse_names(value: str | None, known: dict[str, Any], what: str) -> list[str]:
    """A comma-separated selection of `known` names (all of them when absent), in the order asked."""
    if value is None:
        return list(known)
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise BadRequest(f"{what} {', '.join(unknown) or repr(value)} unknown; known: {', '.join(known)}")
    return list(dict.fromkeys(names))


def property_names(expression: object) -> set[str]:
    """Every property a CQL2 JSON expression refers to (iteratively: its size is bounded, not its shape)."""
    names, stack = set(), [expression]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("property"), str):
                names.add(node["property"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


class Filter(NamedTuple):
    expression: cql2.Expr
    properties: set[str]  # the properties it refers to


def parse_filter(value: str | None, lang: str | None, queryables: set[str], limits: Limits) -> Filter | None:
    """`filter` in CQL2 text (the default) or JSON (`filter-lang=cql2-json`), bounded like every filter of the
    platform before it is parsed, referring only to `queryables`."""
    if value is None:
        return None
    if lang not in (None, "cql2-text", "cql2-json"):
        raise BadRequest(f"filter-lang {lang!r} is not supported; cql2-text or cql2-json")
    try:
        check_cql2(value, lang, limits)
        expression = cql2.Expr(json.loads(value)) if lang == "cql2-json" else cql2.parse_text(value)
        expression.validate()
    except OutOfBounds as exc:
        raise BadRequest(exc.detail) from None
    except BaseException as exc:  # cql2 raises plain exceptions for unparsable or invalid filters
        if not _library_error(exc):
            raise
        raise BadRequest(f"filter is not valid {lang or 'cql2-text'}: {_reason(exc)}") from None
    properties = property_names(expression.to_json())
    unknown = properties - queryables
    if unknown:
        raise BadRequest(
            f"filter refers to {', '.join(sorted(unknown))}, not queryable; queryables: {', '.join(sorted(queryables))}"
        )
    return Filter(expression, properties)


def matches(selection: Filter | None, feature: dict[str, Any]) -> bool:
    """Does the feature match? A comparison with a property the feature lacks (null) is not true; one of values
    whose types differ is the client's error."""
    if selection is None:
        return True
    try:
        return bool(selection.expression.matches(feature))
    except BaseException as exc:
        if not _library_error(exc):
            raise
        if any(feature["properties"].get(name) is None for name in selection.properties - {"id", "geometry"}):
            return False
        raise BadRequest(f"filter cannot be evaluated: {_reason(exc)}") from None
