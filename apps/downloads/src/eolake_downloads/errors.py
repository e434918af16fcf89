"""What the orders' core refuses, with the HTTP status the service answers (as problem+json)."""

from __future__ import annotations

from typing import Any


class Refused(Exception):
    """A request the core will not carry out: `status` (4xx, or 5xx for a dependency), `detail`, `extra` members
    of the problem document, `headers` of the answer."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers, extra
