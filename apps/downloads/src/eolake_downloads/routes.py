"""The download service's routes: each parses, calls the orders' core (a dependency: `orders`, which tests may
override with FastAPI's dependency_overrides), and answers."""

from __future__ import annotations

import base64
import json
from datetime import UTC
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from eolake_downloads import metrics
from eolake_downloads.orders import OrderRequest, Orders, RetrieveRequest
from eolake_downloads.streaming import parse_range, s3_body
from eolake_kit import Principal, problem, require_role
from eolake_kit.zerocopy import FileSpanResponse

User = Annotated[Principal, Depends(require_role("user"))]


def orders(request: Request) -> Orders:
    return request.app.state.orders


Book = Annotated[Orders, Depends(orders)]
router = APIRouter()


def _created(doc: dict, book: Orders) -> Response:
    return Response(
        json.dumps(doc),
        status_code=201,
        media_type="application/json",
        headers={"Location": f"{book.base}/orders/{doc['id']}"},
    )


@router.post(
    "/orders",
    status_code=201,
    summary="Order items or the result of a search",
    responses={
        404: {"description": "an ordered item is not in the catalog"},
        409: {"description": "an ordered item is offline: retrieve it first (its `retrieve` link)"},
        429: {"description": "a quota of the caller is exceeded (Retry-After says when to retry)"},
        502: {"description": "the catalog answered something unexpected"},
    },
)
async def create_order(body: OrderRequest, who: User, book: Book) -> Response:
    return _created(await book.place(who.subject, body), book)


@router.post(
    "/retrievals",
    status_code=201,
    summary="Stage an offline item back online (its `retrieve` link)",
    responses={
        404: {"description": "the item is not in the catalog"},
        409: {
            "description": "the item is not offline, or is being retrieved already (that "
            "order's id is in `order` and Location)"
        },
        429: {"description": "a quota of the caller is exceeded"},
    },
)
async def retrieve(body: RetrieveRequest, who: User, book: Book) -> Response:
    return _created(await book.retrieve(who.subject, body), book)


@router.get("/orders/{order_id}", summary="An order: status, progress, providers and files")
async def get_order(order_id: str, who: User, book: Book) -> dict:
    return await book.get(who.subject, order_id)


@router.get("/orders", summary="My orders, newest first")
async def list_orders(
    who: User,
    book: Book,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    token: Annotated[str | None, Query(max_length=200)] = None,
) -> dict:
    return await book.page(who.subject, limit, token)


@router.post("/orders/{order_id}/cancel", summary="Cancel an order in progress")
async def cancel_post(order_id: str, who: User, book: Book) -> dict:
    return await book.cancel(who.subject, order_id)


@router.delete("/orders/{order_id}", summary="Cancel an order in progress")
async def cancel_delete(order_id: str, who: User, book: Book) -> dict:
    return await book.cancel(who.subject, order_id)


FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    206: {"description": "the requested range"},
    304: {"description": "not modified"},
    409: {"description": "the file is not staged yet"},
    410: {"description": "the file expired"},
    416: {"description": "the range is outside the file"},
}


def file_headers(f: dict) -> dict[str, str]:
    sha_hex = f["checksum"][4:]
    digest = base64.b64encode(bytes.fromhex(sha_hex)).decode()
    return {
        "Accept-Ranges": "bytes",
        "ETag": f'"{sha_hex}"',
        "Last-Modified": format_datetime(f["staged_at"].astimezone(UTC), usegmt=True),
        "Content-Disposition": f'attachment; filename="{f["name"]}"',
        "Digest": f"sha-256={digest}",
        "Repr-Digest": f"sha-256=:{digest}:",
        "X-Checksum-SHA256": sha_hex,
        "Cache-Control": "private, no-transform",
    }


def wanted_range(request: Request, size: int, headers: dict[str, str]) -> tuple[int, int] | None | str:
    wanted = parse_range(request.headers.get("range"), size)
    if_range = request.headers.get("if-range")
    if if_range and if_range not in (headers["ETag"], headers["Last-Modified"]):
        return None  # the file changed since the client's partial copy: send it whole
    return wanted


# Two routes rather than one for both methods: each gets its own OpenAPI operation id.
@router.get(
    "/orders/{order_id}/files/{file_id}",
    summary="Download a staged file (HTTP Range supported)",
    responses=FILE_RESPONSES,
)
@router.head(
    "/orders/{order_id}/files/{file_id}",
    summary="A staged file's size, checksum and validators",
    responses=FILE_RESPONSES,
)
async def download(order_id: str, file_id: str, who: User, book: Book, request: Request) -> Response:
    f = await book.ready_file(who.subject, order_id, file_id)
    size, headers = int(f["size"]), file_headers(f)
    media = f["media_type"] or "application/octet-stream"
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    wanted = wanted_range(request, size, headers)
    if isinstance(wanted, str):  # "bad"
        return problem(
            416,
            f"range not satisfiable for a file of {size} bytes",
            headers={"Content-Range": f"bytes */{size}", **headers},
        )
    start, end = wanted if wanted else (0, size - 1)
    headers["Content-Length"] = str(end - start + 1 if size else 0)
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    status = 206 if wanted else 200
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media)
    settings = book.settings
    length = int(headers["Content-Length"])
    if settings.storage_kind == "s3":
        body = s3_body(settings, f["location"], start, end, length)
        return StreamingResponse(body, status_code=status, headers=headers, media_type=media)
    if settings.proxy_sends_files and request.headers.get("x-sendfile-type") == "X-Sendfile":
        served_bytes(length)
        headers |= {"X-Sendfile": f["location"], "Content-Length": "0"}  # the proxy sends the span (Content-Range)
        return Response(status_code=status, headers=headers, media_type=media)
    return FileSpanResponse(
        f["location"], start, length, sent=served_bytes, status_code=status, headers=headers, media_type=media
    )


def served_bytes(n: int) -> None:
    metrics.BYTES_SERVED.labels(metrics.SERVICE).inc(n)
