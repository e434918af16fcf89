"""Usage analytics: server-side Matomo tracking of API requests, off the request path.

Nothing is sent unless the service's settings name a Matomo URL and a site id. Each finished API request (not the
probes, not unmatched paths, not CORS preflights) becomes one hit in a bounded in-memory queue; one background task
sends the queue in batches with Matomo's bulk tracking API (a POST of ``{"requests": ["?idsite=…", …]}`` to
``<matomo_url>/matomo.php``) with a short timeout. A full queue drops hits and a failed batch is lost: both are
counted, neither is ever raised to, or waited for by, a request.

Parameters of each hit (Matomo HTTP tracking API, https://developer.matomo.org/api-reference/tracking-api):

- ``idsite``: the configured site id; ``rec=1`` (record) and ``apiv=1`` (API version 1);
- ``url``: the public URL of the request, from the configured public URL, the path and the query string (never the
  Host header); query parameters that look like credentials (token, key, secret, password, signature…) are left out;
- ``action_name``: ``"<service> <method> <route template>"``, e.g. ``"catalog GET /search"``, so reports group
  by operation rather than by raw path;
- ``ua`` and ``lang``: the caller's User-Agent and Accept-Language headers, when sent;
- ``uid``: for an authenticated caller, a SHA-256 digest of its subject (never the subject, never a credential);
- ``gt_ms``: the time the service took, in milliseconds;
- ``rand``: a random value (defeats caches); ``send_image=0``: no GIF in answer.

``token_auth`` is sent (in the POST body, never in a URL) only when ``matomo_token`` is set. ``cip`` is not sent:
behind the gateway or an ingress a service sees the proxy's address, not the visitor's.

Web-view page views are tracked by the browser with Matomo's JavaScript tracker: ``page_view_config`` gives the web
view what it needs (the same settings, ``EOLAKE_WEB_MATOMO_URL`` and ``EOLAKE_WEB_MATOMO_SITE_ID``).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import random
import re
import time
from urllib.parse import parse_qsl, urlencode

import httpx
from prometheus_client import Counter

from eolake_kit.observe import PROBES, Finished
from eolake_kit.settings import ServiceSettings

SENT = Counter("eolake_matomo_sent", "Tracking hits Matomo accepted", ["service"])
DROPPED = Counter(
    "eolake_matomo_dropped", "Tracking hits dropped because the queue was full or at shutdown", ["service"]
)
FAILURES = Counter(
    "eolake_matomo_failures", "Tracking hits lost because Matomo failed or did not answer in time", ["service"]
)

BATCH = 100  # hits per bulk request
WARN_EVERY = 60.0  # seconds between two warnings about an unreachable Matomo
# A query parameter is left out of the tracked URL when a word of its name is one of these.
SENSITIVE = {
    "token",
    "key",
    "apikey",
    "secret",
    "password",
    "passwd",
    "pwd",
    "signature",
    "sig",
    "credential",
    "credentials",
    "auth",
    "authorization",
    "session",
    "sessionid",
    "jwt",
    "code",
}
log = logging.getLogger("eolake.matomo")


def tracking_endpoint(matomo_url: str) -> str:
    url = matomo_url.rstrip("/")
    return url if url.endswith(".php") else url + "/matomo.php"


def page_view_config(settings: ServiceSettings) -> dict[str, str | int | None] | None:
    """What the web view's JavaScript tracker needs (its `setTrackerUrl` and `setSiteId`), or None when off."""
    if not settings.matomo_enabled:
        return None
    return {"tracker_url": tracking_endpoint(str(settings.matomo_url)), "site_id": settings.matomo_site_id}


def _public_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if not SENSITIVE.intersection(re.split(r"[^a-z0-9]+", k.lower()))]
    return urlencode(kept)


def visitor_hash(subject: str) -> str:
    return hashlib.sha256(f"eolake:{subject}".encode()).hexdigest()


class MatomoTracker:
    """Queues a hit per finished request (`track`, called by the kit's middleware) and sends them in the background."""

    def __init__(self, settings: ServiceSettings):
        if not settings.matomo_enabled or settings.matomo_site_id is None:
            raise ValueError("Matomo tracking needs matomo_url and matomo_site_id")
        self.service = settings.service_name
        self.endpoint = tracking_endpoint(str(settings.matomo_url))
        self.site_id = settings.matomo_site_id
        self.token = settings.matomo_token.get_secret_value() if settings.matomo_token else None
        self.timeout = settings.matomo_timeout
        self.base = str(settings.public_url).rstrip("/")
        self.queue: asyncio.Queue[dict[str, str | int]] = asyncio.Queue(settings.matomo_queue_size)
        self.task: asyncio.Task[None] | None = None
        self._last_warning = float("-inf")
        self._failed_since_warning = 0
        for counter in (SENT, DROPPED, FAILURES):
            counter.labels(self.service)

    # ------------------------------------------------------------------ on the request path: never blocks, never raises

    def track(self, finished: Finished) -> None:
        if finished.route in PROBES or finished.route == "unmatched" or finished.method == "OPTIONS":
            return
        query = _public_query(finished.query)
        hit: dict[str, str | int] = {
            "idsite": self.site_id,
            "rec": 1,
            "apiv": 1,
            "url": self.base + finished.path + (f"?{query}" if query else ""),
            "action_name": f"{finished.service} {finished.method} {finished.route}",
            "gt_ms": round(finished.seconds * 1000),
            "rand": random.getrandbits(32),
            "send_image": 0,
        }
        if ua := finished.headers.get("user-agent"):
            hit["ua"] = ua[:500]
        if lang := finished.headers.get("accept-language"):
            hit["lang"] = lang[:200]
        who = finished.principal
        if who is not None and getattr(who, "kind", "anonymous") != "anonymous":
            hit["uid"] = visitor_hash(who.subject)
        self.start()
        try:
            self.queue.put_nowait(hit)
        except asyncio.QueueFull:
            DROPPED.labels(self.service).inc()

    # ------------------------------------------------------------------ in the background

    def start(self) -> None:
        """Start the sender (idempotent; needs a running event loop), in a context of its own: no request's ids."""
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(
                self._run(), name="matomo-tracker", context=contextvars.Context()
            )

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, headers={"User-Agent": f"eolake-{self.service}"}) as client:
            while True:
                batch = [await self.queue.get()]
                while len(batch) < BATCH and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                try:
                    await self._send(client, batch)
                except asyncio.CancelledError:  # stopped mid-send at shutdown
                    DROPPED.labels(self.service).inc(len(batch))
                    raise
                finally:
                    for _ in batch:
                        self.queue.task_done()

    async def _send(self, client: httpx.AsyncClient, batch: list[dict[str, str | int]]) -> None:
        body: dict[str, object] = {"requests": ["?" + urlencode(hit) for hit in batch]}
        if self.token:
            body["token_auth"] = self.token
        try:
            response = await client.post(self.endpoint, json=body)
            response.raise_for_status()
        except Exception as exc:  # analytics never propagate a failure
            FAILURES.labels(self.service).inc(len(batch))
            self._failed(exc, len(batch))
        else:
            SENT.labels(self.service).inc(len(batch))

    def _failed(self, exc: Exception, hits: int) -> None:
        self._failed_since_warning += hits
        now = time.monotonic()
        reason = f"{type(exc).__name__}: {exc}"[:300]
        if now - self._last_warning >= WARN_EVERY:
            log.warning(
                "Matomo at %s failed (%s); %d tracking hits lost since the last warning",
                self.endpoint,
                reason,
                self._failed_since_warning,
            )
            self._last_warning, self._failed_since_warning = now, 0
        else:
            log.debug("Matomo at %s failed (%s)", self.endpoint, reason)

    async def aclose(self, flush_timeout: float | None = None) -> None:
        """Send what is queued, for at most `flush_timeout` seconds (the request timeout by default), then stop."""
        if self.task is not None and not self.task.done():
            try:
                await asyncio.wait_for(self.queue.join(), self.timeout if flush_timeout is None else flush_timeout)
            except TimeoutError:
                pass
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        if left := self.queue.qsize():
            DROPPED.labels(self.service).inc(left)
            while not self.queue.empty():
                self.queue.get_nowait()
