"""Quotas and rate limits: one 429 answer for both, and token buckets on each service's expensive routes.

A quota (the downloads' bytes per period, say) raises QuotaExceeded; the rate limiter answers the same problem
(`limit`, `reset`, Retry-After) when a user, or an anonymous client address, has used up its bucket. Buckets live
in the service process: no target has a shared store, and a bound per process is what protects the process. Each
holds `burst` requests and refills at `requests_per_second`, so a quiet client may send a burst at once.

The client address is the peer's, unless the peer is a trusted proxy: then X-Forwarded-For is read from the right,
skipping trusted addresses (what a client writes there itself sits further left and is never reached); a client on
a trusted address itself (a local user of the embedded gateway) is the first address named. A request from a trusted
address without X-Forwarded-For is the platform's own call (a service calling another) and is not limited.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import anyio.to_thread
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from eolake_kit.auth import Authenticator, AuthError
from eolake_kit.problems import problem

MAX_KEYS = 50_000  # buckets kept per process; the least recently seen go first (a fresh bucket is a full one)
FORWARDED = "eolake.forwarded_for"  # the X-Forwarded-For values PublicUrlMiddleware found, before removing them


class QuotaExceeded(Exception):
    """429: `limit` names the quota, `reset` is when it has room again, `retry_after` the seconds to wait."""

    def __init__(self, limit: str, detail: str, reset: datetime, retry_after: int):
        super().__init__(detail)
        self.limit, self.detail, self.reset, self.retry_after = limit, detail, reset, retry_after


def quota_problem(exc: QuotaExceeded) -> Response:
    return problem(
        429,
        exc.detail,
        title="Quota exceeded",
        limit=exc.limit,
        reset=exc.reset.isoformat(),
        headers={"Retry-After": str(exc.retry_after)},
    )


class TokenBuckets:
    """One bucket per key: `burst` tokens, refilled at `rate` a second; a request takes one."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (tokens, when)

    def take(self, key: str) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        now = self.clock()
        tokens, when = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1 if not wait else tokens, now)
        if len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)
        return wait


class TrustedProxies:
    def __init__(self, networks: Iterable[object]):
        self.networks = [ipaddress.ip_network(str(n)) for n in networks]

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client(self, peer: str | None, forwarded: list[str]) -> str | None:
        """The client's address, or None for the platform's own calls (from a trusted peer, naming no client)."""
        hops = [hop.strip() for value in forwarded for hop in value.split(",") if hop.strip()]
        chain = [*hops, peer or "unknown"]
        for address in reversed(chain):
            if not self.trusts(address):
                return address
        return chain[0] if hops else None


class RateLimitMiddleware:
    """429 problem+json with Retry-After once a caller has used up its bucket on one of `routes`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Iterable[str],
        rate: float,
        burst: int,
        root_path: str,
        proxies: TrustedProxies,
        authenticator: Authenticator,
    ):
        self.app = app
        self.routes = re.compile("|".join(f"(?:{pattern})" for pattern in routes)) if routes else None
        self.buckets = TokenBuckets(rate, burst)
        self.root_path, self.proxies, self.authenticator = root_path, proxies, authenticator

    def _limited(self, scope: Scope) -> bool:
        path = scope["path"]
        below = path[len(self.root_path) :] if path.startswith(self.root_path + "/") else path
        return bool(self.routes and self.routes.match(f"{scope['method']} {below}"))

    async def _caller(self, scope: Scope) -> str | None:
        """user:<subject> for valid credentials; else the client's address; None for the platform's own calls."""
        headers = {k: v.decode("latin-1") for k, v in scope["headers"] if k in (b"authorization", b"x-api-key")}
        if headers:
            try:
                who = await anyio.to_thread.run_sync(
                    self.authenticator.authenticate, headers.get(b"authorization"), headers.get(b"x-api-key")
                )
                return f"user:{who.subject}"
            except AuthError:
                pass  # the route answers 401; until then the address pays
        peer = scope["client"][0] if scope.get("client") else None
        address = self.proxies.client(peer, scope.get(FORWARDED, []))
        return f"address:{address}" if address else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._limited(scope):
            return await self.app(scope, receive, send)
        caller = await self._caller(scope)
        wait = self.buckets.take(caller) if caller else 0.0
        if not wait or caller is None:
            return await self.app(scope, receive, send)
        seconds = max(1, math.ceil(wait))
        exceeded = QuotaExceeded(
            "requests-per-second",
            f"rate limit exceeded: {self.buckets.rate:g} requests per second (bursts of {self.buckets.burst}) "
            f"per {'user' if caller.startswith('user:') else 'client address'} on this route; retry in {seconds} s",
            datetime.now(UTC) + timedelta(seconds=wait),
            seconds,
        )
        await quota_problem(exceeded)(scope, receive, send)
