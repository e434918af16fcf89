"""Parallel search across providers, merged in one order, duplicates collapsed, with an opaque page token.

Order: datetime descending, then id descending (pgstac's default, so a provider's own stream is already in merge
order). The merge only emits an item while every provider that may still have results has a buffered item, so
the merged stream is in order and each provider's stream is consumed from its head: every result exactly once.
The token records, per provider, the cursor of the page the merge stopped in and how many of its items were used.
It is signed (HMAC-SHA256 with the platform's signing key): a token the service did not issue is refused before
anything in it is read, so a caller can never choose what the service fetches.

A collection with provider priorities (the spec's `priorities`) is searched in cascade: its providers are asked one
after the other, the first that answers serves the search (its results, even none), and the page says which
(`cascade`: the providers in order and the one that answered; each passed-over provider's report names it in
`answered_by`). The cascade holds for the whole walk: later pages ask the provider that answered the first.

A provider that fails (an error, no answer in its time) never turns into silence: a page some providers are missing
from says so (`partial`, `failed_providers`: those that failed now or on an earlier page of the walk), and a search
that no provider answered is an error (EveryProviderFailed: the service answers 503), never an empty page.

A caller may set a deadline (`deadline_ms`): once it has passed, the page is served from the providers that have
answered by then (at least one: until then the search waits on), the others reported `late`, and it is partial. A
late provider is treated as failed for the rest of the walk: resumed on the next page, its items earlier than the
page's would come out of order, and its copies of items already served would come twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eolake_search.providers import EodagProvider, Page, ProviderError, StacProvider, describe

BACKENDS = "federation:backends"
MAX_TOKEN = 16_384  # characters; a token holds one cursor per provider
MAX_STATE = 262_144  # bytes of decompressed state


FAILED_EARLIER = "failed on an earlier page"
LATE = "late"  # no answer by the caller's deadline: left out of the page, and of the walk's later pages


class BadToken(ValueError):
    pass


class EveryProviderFailed(RuntimeError):
    """None of the providers asked answered: there is nothing to merge, and an empty page would be a lie."""

    def __init__(self, runs: list[ProviderRun]):
        self.runs = runs
        super().__init__(
            "no provider answered the search: " + "; ".join(f"{r.name}: {r.status} ({r.error})" for r in runs)
        )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def encode_token(state: dict[str, Any], key: bytes) -> str:
    payload = _b64(zlib.compress(json.dumps(state, separators=(",", ":")).encode()))
    return f"{payload}.{_mac(key, payload)}"


def decode_token(token: str, key: bytes) -> dict[str, Any]:
    """The state of a token this service signed; BadToken for anything else, before any of it is parsed."""
    payload, _, mac = token.partition(".")
    if len(token) > MAX_TOKEN or not hmac.compare_digest(mac, _mac(key, payload)):
        raise BadToken("the page token is not valid (not issued by this service, or altered)")
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(_unb64(payload), MAX_STATE)
        state = json.loads(raw)
        if inflater.unconsumed_tail or not isinstance(state, dict) or not isinstance(state.get("p"), dict):
            raise ValueError
        return state
    except Exception as exc:
        raise BadToken("the page token is not valid") from exc


def fingerprint(body: object) -> str:
    """A short digest of a JSON value (a request body, a list of collections)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def sort_key(item: dict[str, Any]) -> tuple[Any, ...]:
    props = item.get("properties") or {}
    value = props.get("datetime") or props.get("start_datetime") or ""
    try:
        ts = datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        ts = float("-inf")
    return (-ts, _desc(str(item.get("id", ""))))


def _desc(text: str) -> tuple[Any, ...]:
    return tuple(-ord(c) for c in text) + (1,)  # descending string order; a prefix sorts after longer strings


def identity(item: dict[str, Any]) -> tuple[Any, ...]:
    return (item.get("collection"), item.get("id"))


@dataclass
class ProviderRun:
    name: str
    status: str = "ok"
    ms: float = 0.0
    error: str | None = None
    http_status: int | None = None
    page: Page | None = None
    cursor: dict[str, Any] | None = None
    skip: int = 0
    used: int = 0
    answered_by: str | None = None  # in a cascade: the provider that answered instead of this one

    def estimate(self) -> int:
        seen = self.skip + len(self.page.items) + (1 if self.page.next else 0) if self.page else 0
        return max(self.page.matched or 0, seen) if self.page else 0

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "ms": round(self.ms, 1),
            "count": self.used if self.status == "ok" else 0,
        }
        if self.page is not None and self.page.matched is not None:
            out["matched"] = self.page.matched
        if self.error:
            out["error"] = self.error
        if self.answered_by:
            out["answered_by"] = self.answered_by
        return out


async def fetch(
    provider: StacProvider | EodagProvider,
    body: dict[str, Any],
    cursor: dict[str, Any] | None,
    skip: int,
    limit: int,
    page_max: int,
    timeout: float,
) -> ProviderRun:
    """Fetch the provider's items from (cursor, skip), enough for a page of `limit`, within `timeout`."""
    run = ProviderRun(provider.name, cursor=cursor, skip=skip)
    start = time.perf_counter()
    try:

        async def walk() -> Page:
            nonlocal cursor, skip
            while True:
                page = await provider.search(body, cursor, min(skip + limit, page_max))
                if not page.items:
                    page.next = None  # an empty page ends the stream, whatever its links say
                if skip >= len(page.items) and page.next and page.items:
                    skip -= len(page.items)
                    cursor = page.next
                    continue
                return page

        run.page = await asyncio.wait_for(walk(), timeout)
        run.cursor, run.skip = cursor, skip
    except TimeoutError:
        run.status, run.error = "timeout", f"no answer within {timeout:g} s"
    except ProviderError as exc:
        run.status, run.error, run.http_status = "error", describe(exc), exc.status
    except Exception as exc:  # connection refused, DNS, bad JSON…: a provider's fault, never the search's
        run.status, run.error = "error", describe(exc)
    run.ms = (time.perf_counter() - start) * 1000
    return run


def merge(
    runs: list[ProviderRun], limit: int, key: Callable[[dict[str, Any]], tuple[Any, ...]] = sort_key
) -> list[dict[str, Any]]:
    """The providers' streams merged in `key` order (each stream must already be in it), duplicates collapsed."""
    buffers = {r.name: list(r.page.items[r.skip :]) if r.status == "ok" and r.page else [] for r in runs}
    more = {r.name: bool(r.status == "ok" and r.page and r.page.next) for r in runs}
    by_name = {r.name: r for r in runs}
    out: list[dict[str, Any]] = []
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    head_keys: dict[str, tuple[Any, ...]] = {}  # each item's key computed once, when it reaches its buffer's head

    def take(name: str) -> None:
        item = buffers[name].pop(0)
        head_keys.pop(name, None)
        by_name[name].used += 1
        key = identity(item)
        if key in seen:
            backends = seen[key].setdefault("properties", {}).setdefault(BACKENDS, [])
            if name not in backends:
                backends.append(name)
            return
        item.setdefault("properties", {})[BACKENDS] = [name]
        seen[key] = item
        out.append(item)

    while True:
        if any(not buf and more[name] for name, buf in buffers.items()):
            break  # a provider might still have an earlier item: stop here, resume from the token
        heads = []
        for name, buf in buffers.items():
            if buf:
                if name not in head_keys:
                    head_keys[name] = key(buf[0])
                heads.append((head_keys[name], name))
        if not heads:
            break
        _, name = min(heads)
        if len(out) >= limit and identity(buffers[name][0]) not in seen:
            break
        take(name)
    for name, buf in buffers.items():  # copies of items already emitted: consume them now, never on a later page
        while buf and identity(buf[0]) in seen:
            take(name)
    return out


def failed_providers(runs: list[ProviderRun], skipped: dict[str, dict[str, Any]]) -> list[str]:
    """The providers this page lacks because they failed, now or on an earlier page (`skipped`: the providers not
    asked, each with its reason); EveryProviderFailed when every provider asked failed."""
    if runs and all(r.status != "ok" for r in runs):
        raise EveryProviderFailed(runs)
    return sorted(
        [r.name for r in runs if r.status != "ok" and not r.answered_by]
        + [name for name, entry in skipped.items() if entry.get("reason") == FAILED_EARLIER]
    )


def next_state(runs: list[ProviderRun], previous: dict[str, Any], query: str) -> dict[str, Any] | None:
    """The token state after this page, or None when every provider's stream is finished."""
    state: dict[str, Any] = {"q": query, "p": {}}
    active = False
    for run in runs:
        if run.answered_by:
            state["p"][run.name] = {"done": True, "answered_by": run.answered_by}
            continue
        if run.status != "ok" or run.page is None:
            state["p"][run.name] = {"failed": True}
            continue
        consumed = run.skip + run.used
        if consumed >= len(run.page.items):
            if run.page.next is None:
                state["p"][run.name] = {"done": True}
                continue
            state["p"][run.name] = {"c": run.page.next, "s": 0}
        else:
            state["p"][run.name] = {"c": run.cursor, "s": consumed}
        active = True
    for name, entry in previous.get("p", {}).items():  # providers finished or failed on an earlier page
        state["p"].setdefault(name, entry)
    return state if active else None


def skip_reason(entry: dict[str, Any]) -> str | None:
    """Why a provider is not asked for this page (its entry in the page token), or None: it is asked."""
    if entry.get("answered_by"):
        return f"in cascade: {entry['answered_by']} answered"
    if entry.get("done"):
        return "finished"
    return FAILED_EARLIER if entry.get("failed") else None


def cascade_of(
    names: list[str], collections: list[str] | None, priorities: dict[str, list[str]], named: bool = False
) -> list[str]:
    """The providers (of `names`, in priority order) to ask one after the other for a search of `collections`
    (None: any; then the `*` priority), or [] when there is none: every provider is asked at once. A search that
    `named` its providers, or of collections with different priorities, has no cascade."""
    if named:
        return []
    lists = {tuple(priorities.get(c) or priorities.get("*") or ()) for c in collections or ["*"]}
    if len(lists) != 1:
        return []
    return [n for n in lists.pop() if n in names]


async def first_answering(name_calls: list[tuple[str, Callable[[], Awaitable[ProviderRun]]]]) -> list[ProviderRun]:
    """Ask the providers one after the other until one answers; every run, the passed-over ones naming it."""
    runs: list[ProviderRun] = []
    for _, call in name_calls:
        run = await call()
        runs.append(run)
        if run.status == "ok":
            break
    answered = runs[-1].name if runs and runs[-1].status == "ok" else None
    if answered:
        asked = {r.name for r in runs}
        runs += [ProviderRun(name, status="skipped") for name, _ in name_calls if name not in asked]
        for run in runs:
            run.answered_by = answered if run.name != answered else None
    return runs


async def gather_until(
    jobs: list[tuple[list[str], Awaitable[ProviderRun | list[ProviderRun]]]], deadline: float | None
) -> list[ProviderRun]:
    """Every job's runs (a job: one provider, or a cascade of several). With a `deadline` (seconds), the jobs still
    running once it has passed and some provider has answered are cancelled, their providers reported `late`: the
    page is served from those that answered. Until one has, the search waits on (within the providers' timeouts)."""
    start = time.perf_counter()
    tasks = [asyncio.ensure_future(job) for _, job in jobs]
    try:
        if deadline is None:
            await asyncio.gather(*tasks)
        else:
            _, pending = await asyncio.wait(tasks, timeout=deadline)
            while pending and not any(_answered(t) for t in tasks if t.done()):
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:  # the late ones, or every one when this search itself is cancelled
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    late_ms = (time.perf_counter() - start) * 1000
    runs: list[ProviderRun] = []
    for (names, _), task in zip(jobs, tasks, strict=True):
        if task.cancelled():
            error = f"no answer within the caller's deadline ({deadline * 1000:g} ms)" if deadline else None
            runs += [ProviderRun(name, status=LATE, ms=late_ms, error=error) for name in names]
        else:
            result = task.result()
            runs += result if isinstance(result, list) else [result]
    return runs


def _answered(task: asyncio.Future[ProviderRun | list[ProviderRun]]) -> bool:
    if task.cancelled() or task.exception() is not None:
        return False
    result = task.result()
    return any(r.status == "ok" for r in (result if isinstance(result, list) else [result]))


def cascade_report(cascade: list[str], runs: list[ProviderRun], previous: dict[str, Any]) -> dict[str, Any]:
    """What the page says of the cascade (`cascade`: the providers in order and the one that answered; on a later
    page, the one that answered the first); nothing without one."""
    if not cascade:
        return {}
    answered = next((r.name for r in runs if r.name in cascade and r.status == "ok"), None)
    earlier = next(
        (e["answered_by"] for n, e in previous.get("p", {}).items() if n in cascade and e.get("answered_by")), None
    )
    return {"cascade": {"providers": cascade, "answered_by": answered or earlier}}
