"""The hydroweb text format of water-level series: `#KEY:: value` header lines, then
`date time height uncertainty` rows (heights in metres above the geoid)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

Row = tuple[datetime, float, float]
COLUMNS = ["#COL 1 : date (yyyy-mm-dd)", "#COL 2 : hour of passage (hh:mm)",
           "#COL 3 : height above geoid EGM2008 (m)", "#COL 4 : uncertainty of height (m)"]


def format_hydroweb(header: dict[str, str], rows: list[Row]) -> str:
    lines = [f"#{key}:: {value}" for key, value in header.items()] + COLUMNS
    lines += [f"{when:%Y-%m-%d %H:%M} {height:.3f} {unc:.2f}" for when, height, unc in rows]
    return "\n".join(lines) + "\n"


def parse_hydroweb(path: Path | str) -> tuple[dict[str, str], list[Row]]:
    """Header (`#KEY:: value` and `#COL n : ...` lines) and (UTC time, height, uncertainty) rows."""
    header: dict[str, str] = {}
    rows: list[Row] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                body = line[1:]
                if "::" in body:
                    key, value = body.split("::", 1)
                    header[key.strip()] = value.strip()
                elif body.startswith("COL") and ":" in body:
                    key, value = body.split(":", 1)
                    header[" ".join(key.split())] = value.strip()
                continue
            try:
                day, hour, height, unc = line.split()[:4]
                when = datetime.strptime(f"{day} {hour}", "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
                values = float(height), float(unc)
                if not all(map(math.isfinite, values)):
                    raise ValueError("non-finite value")
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: malformed hydroweb data line {line!r}: {exc}") from None
            rows.append((when, *values))
    return header, rows
