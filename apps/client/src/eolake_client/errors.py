"""Errors carrying the server's problem details (RFC 9457)."""

from __future__ import annotations

import httpx


class EolakeError(Exception):
    """A request the server refused or could not serve; `problem` is its problem+json body when it sent one."""

    def __init__(self, status: int, detail: str, problem: dict | None = None, url: str | None = None):
        self.status, self.detail, self.problem, self.url = status, detail, problem or {}, url
        super().__init__(f"{status} {self.problem.get('title') or ''}: {detail}".replace("  ", " "))


class Unauthorized(EolakeError):
    """401: no, expired or invalid credentials."""


class Forbidden(EolakeError):
    """403: authenticated, but the role is missing."""


class NotFound(EolakeError):
    """404: unknown, or another user's, resource."""


class QuotaExceeded(EolakeError):
    """429: `limit` says which quota, `reset` when it resets, `retry_after` seconds to wait."""

    def __init__(self, status, detail, problem=None, url=None, retry_after: float | None = None):
        super().__init__(status, detail, problem, url)
        self.limit = self.problem.get("limit")
        self.reset = self.problem.get("reset")
        self.retry_after = retry_after


class ChecksumMismatch(EolakeError):
    """A downloaded file does not match its checksum (the partial file is discarded)."""


class OrderFailed(EolakeError):
    """The order ended failed or canceled."""


class Interrupted(Exception):
    """The transfer stopped before the end (the .part file is kept for a resume)."""


_BY_STATUS = {401: Unauthorized, 403: Forbidden, 404: NotFound, 429: QuotaExceeded}


def raise_for_problem(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    problem: dict = {}
    try:
        if resp.headers.get("content-type", "").split(";")[0].endswith("json"):
            body = resp.json() if not resp.is_stream_consumed or resp.content else {}
            problem = body if isinstance(body, dict) else {}
    except (ValueError, httpx.ResponseNotRead):
        problem = {}
    detail = str(problem.get("detail") or resp.reason_phrase or "error")
    cls = _BY_STATUS.get(resp.status_code, EolakeError)
    if cls is QuotaExceeded:
        ra = resp.headers.get("retry-after")
        raise QuotaExceeded(resp.status_code, detail, problem, str(resp.url),
                            retry_after=float(ra) if ra and ra.isdigit() else None)
    raise cls(resp.status_code, detail, problem, str(resp.url))
