"""Security headers on every answer, and CORS as the spec configures it.

Headers a route set itself win (the web view's strict Content-Security-Policy, a download's Cache-Control); the
rest get safe defaults. CORS never allows credentials: callers authenticate with headers (bearer token, API key),
never cookies, so no origin needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from fastapi import FastAPI

API_CSP = b"default-src 'none'; frame-ancestors 'none'"
HTML_CSP = b"frame-ancestors 'none'"  # the API documentation pages load their scripts; no framing all the same
HSTS = b"max-age=31536000"
CREDENTIALS = (b"authorization", b"x-api-key")
CORS_HEADERS = [
    "Authorization",
    "X-API-Key",
    "Content-Type",
    "Accept",
    "Accept-Language",
    "Range",
    "If-None-Match",
    "If-Range",
    "X-Request-Id",
    "Eolake-Read-After",
    "traceparent",
    "tracestate",
]
CORS_EXPOSED = [
    "Location",
    "Retry-After",
    "ETag",
    "Content-Range",
    "Content-Disposition",
    "X-Request-Id",
    "WWW-Authenticate",
    "Digest",
    "Repr-Digest",
    "X-Checksum-SHA256",
    "Eolake-Read-After",
]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, https: bool):
        self.app, self.https = app, https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        authenticated = any(name in CREDENTIALS for name, _ in scope["headers"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self._completed(list(message.get("headers", [])), authenticated)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _completed(self, headers: list[tuple[bytes, bytes]], authenticated: bool) -> list[tuple[bytes, bytes]]:
        present = {name.lower(): value for name, value in headers}
        html = present.get(b"content-type", b"").startswith(b"text/html")
        defaults = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
            (b"content-security-policy", HTML_CSP if html else API_CSP),
        ]
        if self.https:
            defaults.append((b"strict-transport-security", HSTS))
        if authenticated:  # an answer for one caller is never kept by a shared cache
            defaults.append((b"cache-control", b"private, no-store"))
        return headers + [(name, value) for name, value in defaults if name not in present]


def install_headers(app: FastAPI, *, https: bool, cors_origins: list[str]) -> None:
    """Outermost first: CORS answers preflights, the security headers go on every answer including errors."""
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSED,
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware, https=https)
