"""Reader of the hydroweb text format: `#KEY:: value` header lines and `#COL n : …` column descriptions, then
one `yyyy-mm-dd hh:mm height uncertainty` row per measurement (metres above the geoid, UTC)."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple


class Measurement(NamedTuple):
    time: datetime
    height: float
    uncertainty: float


def parse_hydroweb(path: Path | str) -> tuple[dict[str, str], list[Measurement]]:
    """A hydroweb file (UTF-8); ValueError names the file and line of anything malformed."""
    with open(path, encoding="utf-8") as fh:
        return parse_hydroweb_lines(fh, str(path))


def parse_hydroweb_bytes(data: bytes, source: str) -> tuple[dict[str, str], list[Measurement]]:
    """Hydroweb text held in memory (e.g. an object read from S3), read as the file reader reads a file: UTF-8,
    universal newlines; `source` names it in errors."""
    return parse_hydroweb_lines(io.StringIO(data.decode("utf-8"), newline=None), source)


def parse_hydroweb_lines(lines: Iterable[str], source: str) -> tuple[dict[str, str], list[Measurement]]:
    header: dict[str, str] = {}
    rows: list[Measurement] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        if text[0] == "#":
            content = text[1:]
            if "::" in content:
                name, _, value = content.partition("::")
                header[name.strip()] = value.strip()
            elif content.startswith("COL") and ":" in content:
                name, _, value = content.partition(":")
                header[" ".join(name.split())] = value.strip()
            continue
        fields = text.split()
        try:
            if len(fields) < 4:
                raise ValueError("expected date, time, height and uncertainty")
            when = datetime.strptime(f"{fields[0]} {fields[1]}", "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
            height, uncertainty = float(fields[2]), float(fields[3])
            if not (math.isfinite(height) and math.isfinite(uncertainty)):
                raise ValueError("non-finite value")
        except ValueError as exc:
            raise ValueError(f"{source}:{number}: malformed hydroweb data line {text!r}: {exc}") from None
        rows.append(Measurement(when, height, uncertainty))
    rows.sort(key=lambda m: m.time)
    return header, rows
