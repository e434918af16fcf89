"""Pin every request to the configured public URL and prefix, so links never come from a client's Host header."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

# A client may send these; nothing downstream (stac-fastapi's proxy middleware included) may trust them.
UNTRUSTED = {
    b"host",
    b"forwarded",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    b"x-forwarded-port",
    b"x-forwarded-prefix",
    b"x-forwarded-for",
}


class PublicUrlMiddleware:
    def __init__(self, app: ASGIApp, public_url: str, root_path: str):
        parts = urlsplit(public_url)
        self.app = app
        self.scheme = parts.scheme
        self.netloc = parts.netloc.encode()
        self.server = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        self.root_path = root_path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = dict(scope)
            scope["scheme"] = self.scheme if scope["type"] == "http" else ("wss" if self.scheme == "https" else "ws")
            scope["server"] = self.server
            # Believed only from trusted proxies, and only by the rate limiter (eolake_kit.ratelimit).
            scope["eolake.forwarded_for"] = [
                v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"
            ]
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in UNTRUSTED] + [(b"host", self.netloc)]
            path = scope["path"]
            if self.root_path and not (path == self.root_path or path.startswith(self.root_path + "/")):
                # Called directly (probes, tests) rather than through the gateway: same routes, same links.
                path = self.root_path + path
                scope["raw_path"] = path.encode()
            scope["path"] = path
            scope["root_path"] = self.root_path
        await self.app(scope, receive, send)
