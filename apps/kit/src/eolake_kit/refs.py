"""Identifiers that travel into URLs (collection and item ids): validated once, quoted wherever they are put."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from pydantic import AfterValidator, StringConstraints

# No control characters and no path separators; everything else is quoted when used in a URL.
ID_PATTERN = r"^[^\x00-\x1f\x7f/\\]{1,256}$"


def _not_dot_segment(value: str) -> str:
    if value in (".", ".."):
        raise ValueError("an id cannot be . or ..")
    return value


StacId = Annotated[str, StringConstraints(pattern=ID_PATTERN), AfterValidator(_not_dot_segment)]


def segment(value: str) -> str:
    """`value` as one URL path segment."""
    return quote(value, safe="")
