"""STAC `datetime` parameters (an RFC 3339 instant, or an interval with `..` or an empty end), checked before a
database or a provider sees them."""

from __future__ import annotations

import re
from datetime import datetime

# RFC 3339 date-time (section 5.6): the T and Z in either case, fractions of any length, offsets with a colon
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def check_interval(value: str) -> None:
    """Raise ValueError, naming what is wrong, unless `value` is an instant or a closed or half-open interval."""
    parts = value.split("/")
    if len(parts) > 2 or all(p in ("", "..") for p in parts):
        raise ValueError(f"datetime {value!r} is not an RFC 3339 instant or interval")
    for part in parts:
        if part in ("", ".."):
            continue
        if not parse_instant(part):
            raise ValueError(f"datetime {part!r} is not RFC 3339")


def parse_instant(text: str) -> datetime | None:
    """An RFC 3339 date-time (lowercase t and z too), or None."""
    if not RFC3339.fullmatch(text):
        return None
    fraction = re.search(r"\.(\d+)", text)  # Python reads at most microseconds
    if fraction and len(fraction.group(1)) > 6:
        text = text.replace(fraction.group(0), fraction.group(0)[:7])
    try:
        return datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return None
