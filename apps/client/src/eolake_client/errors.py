"""Errors carrying the server's problem details (RFC 9457)."""

from __future__ import annotations

import json
import re

import httpx


class EolakeError(Exception):
    """A request the server refused or could not serve; `problem` is its problem+json body when it sent one."""

    def __init__(self, status: int, detail: str, problem: dict | None = None, url: str | None = None):
        self.status, self.detail, self.problem, self.url = status, detail, problem or {}, url
        title = self.problem.get("title")
        super().__init__(f"{status} {title}: {detail}" if title else f"{status}: {detail}")


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


class Unreachable(EolakeError):
    """No answer from the server (refused, unknown host, timed out) after the client's bounded retries."""

    def __init__(self, url: str, reason: str, attempts: int = 1):
        self.reason, self.attempts = reason, attempts
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(0, f"cannot reach {url}: {reason}{tries}", None, url)
        Exception.__init__(self, self.detail)


class NotAnApi(EolakeError):
    """The server answered, but not with the JSON of an eolake service (a wrong --url, a proxy's page)."""


class Interrupted(Exception):
    """The transfer stopped before the end (the .part file is kept for a resume)."""


_BY_STATUS = {401: Unauthorized, 403: Forbidden, 404: NotFound, 429: QuotaExceeded}


def error_for(status: int, problem: dict, reason: str, url: str, retry_after: str | None = None) -> EolakeError:
    """The error for an HTTP status and its problem+json body (empty when the server sent none)."""
    detail = str(problem.get("detail") or problem.get("description") or reason or "error")
    cls = _BY_STATUS.get(status, EolakeError)
    if cls is QuotaExceeded:
        return QuotaExceeded(
            status,
            detail,
            problem,
            url,
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )
    return cls(status, detail, problem, url)


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
    raise error_for(resp.status_code, problem, resp.reason_phrase, str(resp.url), resp.headers.get("retry-after"))


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^\"')]+)")


def transport_reason(exc: BaseException) -> str:
    """What failed on the wire, in a few words: "Connection refused", "Name or service not known", "timed out"."""
    text = str(exc) or type(exc).__name__
    found = _ERRNO.search(text)
    if found:
        return found.group(1).strip()
    if isinstance(exc, httpx.TimeoutException) or "timed out" in text.lower():
        return "timed out"
    return text


def from_stac_api_error(exc: Exception, url: str, attempts: int = 1) -> EolakeError:
    """pystac-client's APIError (a status and the body's text, or a requests error's text) as one of ours."""
    status = getattr(exc, "status_code", None)
    if not status:
        return Unreachable(url, transport_reason(exc), attempts)
    try:
        body = json.loads(str(exc))
    except ValueError:
        body = {}
    problem = body if isinstance(body, dict) else {}
    return error_for(status, problem, "" if problem else str(exc)[:200], url)
