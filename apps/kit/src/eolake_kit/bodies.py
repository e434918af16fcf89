"""JSON request bodies are objects: `null`, `[]`, `"A"` or `0` sent to a JSON endpoint is a 400, for every service.

Only the first significant byte is looked at, before the route reads the body: nothing is buffered beyond the
chunks that precede it, and the route's own parser still judges the rest.
"""

from __future__ import annotations

from eolake_kit.problems import problem

WHITESPACE = b" \t\r\n"
WRITES = {"POST", "PUT", "PATCH"}
NOT_OBJECTS = {"application/json-patch+json"}  # RFC 6902: a list of operations


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media not in NOT_OBJECTS and (media == "application/json" or media.endswith("+json"))


class JsonObjectMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in WRITES:
            return await self.app(scope, receive, send)
        content_type = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-type"), "")
        if not _is_json(content_type):
            return await self.app(scope, receive, send)
        seen: list[dict] = []
        first = None
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] != "http.request":
                break
            body = message.get("body", b"").lstrip(WHITESPACE)
            if body:
                first = body[:1]
                break
            if not message.get("more_body", False):
                break
        if first is not None and first != b"{":
            return await problem(400, "the request body must be a JSON object")(scope, receive, send)

        async def replay():
            return seen.pop(0) if seen else await receive()

        await self.app(scope, replay, send)
