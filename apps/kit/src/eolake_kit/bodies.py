"""Request bodies are JSON, and JSON bodies are objects, for every service.

`null`, `[]`, `"A"` or `0` sent to a JSON endpoint is a 400, so is a PUT or PATCH without a body; a body in another
media type (a form, plain text) is a 415: no eolake route reads anything but JSON. Only the first significant byte
is looked at, before the route reads the body: nothing is buffered beyond the chunks that precede it, and the
route's own parser judges the rest.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.routing import compile_path, get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eolake_kit.contract import api_routes
from eolake_kit.problems import problem

WHITESPACE = b" \t\r\n"
WRITES = {"POST", "PUT", "PATCH"}
REPLACES = {"PUT", "PATCH"}  # never without a body; a POST may have none (POST /orders/{id}/cancel)
NOT_OBJECTS = {"application/json-patch+json"}  # RFC 6902: a list of operations


def _media_type(scope: Scope) -> str:
    content_type = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-type"), "")
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(media: str) -> bool:
    return not media or media == "application/json" or media.endswith("+json")


class JsonBodyMiddleware:
    """Checks the bodies sent to the service's own write routes; anything else is left to routing (404, 405)."""

    def __init__(self, app: ASGIApp, api: FastAPI):
        self.app, self.api = app, api
        self._writes: list[tuple[re.Pattern[str], set[str]]] | None = None

    def _is_write_route(self, scope: Scope) -> bool:
        if self._writes is None:  # the routes are all there once the first request arrives
            self._writes = [
                (compile_path(r.path_format)[0], (r.methods or set()) & WRITES)
                for r in api_routes(self.api)
                if (r.methods or set()) & WRITES
            ]
        path: str = get_route_path(scope)
        return any(scope["method"] in methods and regex.match(path) for regex, methods in self._writes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES or not self._is_write_route(scope):
            return await self.app(scope, receive, send)
        seen, first = await _first_byte(receive)
        media = _media_type(scope)
        if first is not None and not _is_json(media):
            return await problem(415, f"request bodies are JSON (application/json), not {media}")(scope, receive, send)
        if first is not None and first != b"{" and media not in NOT_OBJECTS:
            return await problem(400, "the request body must be a JSON object")(scope, receive, send)
        if first is None and scope["method"] in REPLACES:
            return await problem(400, f"a {scope['method']} request carries the JSON document it sends")(
                scope, receive, send
            )

        async def replay() -> Message:
            return seen.pop(0) if seen else await receive()

        await self.app(scope, replay, send)


async def _first_byte(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The messages read up to the body's first significant byte (to be replayed), and that byte (None: empty)."""
    seen: list[Message] = []
    while True:
        message = await receive()
        seen.append(message)
        if message["type"] != "http.request":
            return seen, None
        body = message.get("body", b"").lstrip(WHITESPACE)
        if body:
            return seen, body[:1]
        if not message.get("more_body", False):
            return seen, None
