"""The hydroweb text format of water-level series: `#KEY:: value` header lines, then
`date time height uncertainty` rows (heights in metres above the geoid). The time-series service owns the
parser; the demo writes files it reads."""

from __future__ import annotations

from datetime import datetime

from eolake_timeseries.hydroweb import parse_hydroweb

Row = tuple[datetime, float, float]
__all__ = ["COLUMNS", "format_hydroweb", "parse_hydroweb"]
COLUMNS = [
    "#COL 1 : date (yyyy-mm-dd)",
    "#COL 2 : hour of passage (hh:mm)",
    "#COL 3 : height above geoid EGM2008 (m)",
    "#COL 4 : uncertainty of height (m)",
]


def format_hydroweb(header: dict[str, str], rows: list[Row]) -> str:
    lines = [f"#{key}:: {value}" for key, value in header.items()] + COLUMNS
    lines += [f"{when:%Y-%m-%d %H:%M} {height:.3f} {unc:.2f}" for when, height, unc in rows]
    return "\n".join(lines) + "\n"
