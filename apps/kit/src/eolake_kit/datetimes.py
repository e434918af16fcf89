"""STAC `datetime` parameters (an RFC 3339 instant, or an interval with `..` or an empty end), checked before a
database or a provider sees them."""

from __future__ import annotations

from datetime import datetime


def check_interval(value: str) -> None:
    """Raise ValueError, naming what is wrong, unless `value` is an instant or a closed or half-open interval."""
    parts = value.split("/")
    if len(parts) > 2 or all(p in ("", "..") for p in parts):
        raise ValueError(f"datetime {value!r} is not an RFC 3339 instant or interval")
    for part in parts:
        if part in ("", ".."):
            continue
        try:
            datetime.fromisoformat(part.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"datetime {part!r} is not RFC 3339") from None
