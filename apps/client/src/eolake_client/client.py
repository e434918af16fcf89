"""The eolake client: search (pystac-client), thesaurus lookups, orders, verified and resumable downloads."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from eolake_client._version import __version__
from eolake_client.auth import ApiKey, BearerToken, ClientCredentials
from eolake_client.errors import (
    ChecksumMismatch,
    EolakeError,
    Interrupted,
    NotAnApi,
    OrderFailed,
    QuotaExceeded,
    Unreachable,
    raise_for_problem,
    transport_reason,
)

CHUNK = 1024 * 1024
FINAL = ("succeeded", "failed", "canceled")


@dataclass
class FileResult:
    name: str
    path: Path
    size: int
    transferred: int  # bytes received over the network in this run
    skipped: bool  # already present and verified


def sha256_file(path: Path, limit: int | None = None) -> hashlib._Hash:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        left = limit
        while True:
            chunk = f.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            digest.update(chunk)
            if left is not None:
                left -= len(chunk)
    return digest


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, EolakeError) and not isinstance(exc, QuotaExceeded) and exc.status >= 500


class Client:
    """`base_url` is the platform's base URL (services under /stac, /downloads, /thesaurus, /search).

    Credentials: `api_key`, a `token`, or `credentials` (a ClientCredentials for service accounts).
    `retries` is the number of attempts of a request that failed on the wire or with a 5xx (first one included),
    `backoff` the first wait between them (doubling); a server still unreachable after them raises Unreachable."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        credentials: ClientCredentials | None = None,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.5,
    ):
        self.base_url = base_url.rstrip("/")
        auth: httpx.Auth | None = None
        if api_key:
            auth = ApiKey(api_key)
        elif token:
            auth = BearerToken(token)
        elif credentials:
            auth = credentials
        self.auth = auth
        self.retries, self.backoff = retries, backoff
        self.http = httpx.Client(
            base_url=self.base_url, auth=auth, timeout=timeout, headers={"User-Agent": f"eolake-client/{__version__}"}
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self.retries),
            wait=wait_exponential(multiplier=self.backoff, max=30),
            reraise=True,
        )

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            for attempt in self._retrying():
                with attempt:
                    resp = self.http.request(method, path, **kwargs)
                    raise_for_problem(resp)
                    return resp
        except httpx.TransportError as exc:
            raise Unreachable(self._url(path), transport_reason(exc), self.retries) from exc
        raise AssertionError("unreachable")

    def get_json(self, path: str, method: str = "GET", **kwargs) -> Any:
        resp = self.request(method, path, **kwargs)
        try:
            return resp.json()
        except ValueError:
            raise NotAnApi(
                resp.status_code,
                f"{resp.url} did not answer JSON ({resp.headers.get('content-type')}): "
                "is the URL the platform's base URL?",
                None,
                str(resp.url),
            ) from None

    def _url(self, path: str) -> str:
        return path if "://" in path else self.base_url + path

    def _auth_headers(self) -> dict[str, str]:
        if isinstance(self.auth, ApiKey):
            return {"X-API-Key": self.auth.key}
        if isinstance(self.auth, BearerToken):
            return {"Authorization": f"Bearer {self.auth.token}"}
        if isinstance(self.auth, ClientCredentials):
            return {"Authorization": f"Bearer {self.auth.token()}"}
        return {}

    # ------------------------------------------------------------------ search

    def catalog(self, path: str = "/stac"):
        """A pystac_client.Client on the platform's catalog (or, with path="/search", the federated search)."""
        import pystac_client
        from pystac_client.stac_api_io import StacApiIO
        from urllib3 import Retry

        retry = Retry(
            total=max(0, self.retries - 1),
            backoff_factor=self.backoff,
            status_forcelist=(502, 503, 504),
            allowed_methods=None,
            raise_on_status=False,
        )
        io = StacApiIO(
            headers={**self._auth_headers(), "User-Agent": f"eolake-client/{__version__}"},
            max_retries=retry,
            timeout=self.http.timeout.read,
        )
        return pystac_client.Client.open(self.base_url + path, stac_io=io)

    def queryables(self, collection: str, path: str = "/stac", **chosen: str) -> dict:
        """What filters on a collection may name (a JSON schema). Dependent: each categorical property's `enum` keeps
        only the values of the items that have every value already chosen (queryables("c", river="TOUCH")). On the
        catalog, or with path="/search" the federated search."""
        return self.get_json(f"{path}/collections/{quote(collection, safe='')}/queryables", params=chosen)

    def search(self, **kwargs) -> Any:
        """pystac_client's ItemSearch on the catalog: collections=, bbox=, datetime=, query=, filter=, max_items=…"""
        return self.catalog().search(**kwargs)

    def federated_search(self, q: str | list[str] | None = None, **kwargs) -> Any:
        """The same search across the configured providers (the federated search service). With `q` (free text,
        expanded through the thesaurus; `expand=False`, `lang=` pass through), a FreeTextSearch with the same
        `items_as_dicts()` as pystac_client's ItemSearch, which has no free text."""
        if q is None:
            return self.catalog("/search").search(**kwargs)
        return FreeTextSearch(self, {"q": q if isinstance(q, str) else ",".join(q), **kwargs})

    def dataset_search(self, q: str | None = None, limit: int = 10, **params) -> dict:
        """One page of the dataset catalog (every provider's collections): ranked by `q`, with `filter` (CQL2),
        `sortby`, `fields`, `lang`, `expand`; the answer carries `numberMatched`, `facets` and the `expansion`."""
        query = {**({"q": q} if q else {}), "limit": limit, **{k: _flat(v) for k, v in params.items()}}
        return self.get_json("/search/collections", params=query)

    def suggest(self, q: str, lang: str | None = None, limit: int = 10) -> list[dict]:
        """Autocomplete: thesaurus concepts and dataset titles for what the user is typing."""
        params = {"q": q, "limit": limit, **({"lang": lang} if lang else {})}
        return self.get_json("/search/suggest", params=params).get("suggestions", [])

    # ------------------------------------------------------------------ thesaurus

    def thesaurus_search(self, query: str, lang: str | None = None, vocab: str | None = None) -> list[dict]:
        params = {"query": query, **({"lang": lang} if lang else {}), **({"vocab": vocab} if vocab else {})}
        return self.get_json("/thesaurus/rest/v1/search", params=params).get("results", [])

    def thesaurus_expand(self, q: str, lang: str | None = None, depth: int = 1) -> dict:
        params = {"q": q, "depth": depth, **({"lang": lang} if lang else {})}
        return self.get_json("/thesaurus/expand", params=params)

    # ------------------------------------------------------------------ orders

    def order(
        self, items: list[tuple[str, str]] | None = None, assets: list[str] | None = None, search: dict | None = None
    ) -> dict:
        """Order items ((collection, item id) pairs) and/or the result of a STAC search body."""
        body: dict[str, Any] = {
            "items": [{"collection": c, "id": i, **({"assets": assets} if assets else {})} for c, i in items or []]
        }
        if search is not None:
            body["search"] = search
            if assets:
                body["assets"] = assets
        return self.get_json("/downloads/orders", "POST", json=body)

    def status(self, order_id: str) -> dict:
        return self.get_json(f"/downloads/orders/{quote(order_id, safe='')}")

    def pages(self, path: str, params: dict | None = None) -> Iterator[dict]:
        """The pages of a paged answer (a STAC item collection, the orders), following its `rel: next` links."""
        page = self.get_json(path, params=params)
        while True:
            yield page
            links = page.get("links") if isinstance(page, dict) else None
            nxt = [li for li in links or [] if isinstance(li, dict) and li.get("rel") == "next" and li.get("href")]
            if not nxt:
                return
            page = self.get_json(nxt[0]["href"])

    def orders(self, limit: int = 20) -> Iterator[dict]:
        for page in self.pages("/downloads/orders", params={"limit": limit}):
            yield from page["orders"]

    def cancel(self, order_id: str) -> dict:
        return self.get_json(f"/downloads/orders/{quote(order_id, safe='')}/cancel", "POST")

    def wait(
        self,
        order_id: str,
        timeout: float | None = None,
        interval: float = 0.5,
        max_interval: float = 15,
        on_update: Callable[[dict], None] | None = None,
    ) -> dict:
        """Poll until the order is final (backoff from `interval` to `max_interval`); raises TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            order = self.status(order_id)
            if on_update:
                on_update(order)
            if order["status"] in FINAL:
                return order
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"order {order_id} still {order['status']} after {timeout} s")
            time.sleep(interval)
            interval = min(interval * 1.5, max_interval)

    # ------------------------------------------------------------------ offline items (storage tiers)

    def item(self, collection: str, item_id: str) -> dict:
        """An item as the catalog has it now."""
        return self.get_json(f"/stac/collections/{quote(collection, safe='')}/items/{quote(item_id, safe='')}")

    def retrieve(self, item: dict) -> dict:
        """POST an orderable item's `retrieve` link: the retrieval order that stages it back online. When one is
        under way already (409 naming it), that order."""
        link = next((x for x in item.get("links") or [] if x.get("rel") == "retrieve"), None)
        if link is None:
            tier = (item.get("properties") or {}).get("storage:tier") or "not given"
            raise OrderFailed(
                409, f"item {item.get('id')} is not offline (storage:tier {tier}, no retrieve link): order it instead"
            )
        try:
            return self.get_json(link["href"], link.get("method", "POST"), json=link.get("body"))
        except EolakeError as exc:
            if exc.status == 409 and (exc.problem or {}).get("order"):
                return self.status(exc.problem["order"])
            raise

    def wait_online(
        self, item: dict, order_id: str, timeout: float | None = None, interval: float = 0.5, max_interval: float = 15
    ) -> dict:
        """Poll the item until the catalog says it is online; OrderFailed when its retrieval ends otherwise."""
        deadline = None if timeout is None else time.monotonic() + timeout
        links = {x.get("rel"): x.get("href") for x in item.get("links") or []}
        self_link = links.get("self") or links.get("via")  # a federated search's item names its catalog's as `via`

        def online() -> dict | None:
            current = self.get_json(self_link) if self_link else self.item(item["collection"], item["id"])
            return current if current["properties"].get("storage:tier") != "offline" else None

        while True:
            if current := online():
                return current
            order = self.status(order_id)
            if order["status"] in FINAL:  # the item changes with the order: read after it, it says the last word
                if current := online():
                    return current
                raise OrderFailed(409, f"retrieval {order_id} {order['status']}: {order.get('reason')}", order)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"item {item['id']} still offline after {timeout} s")
            time.sleep(interval)
            interval = min(interval * 1.5, max_interval)

    def obtain(
        self,
        item: dict,
        dest: str | Path,
        *,
        assets: list[str] | None = None,
        timeout: float | None = None,
        interval: float = 0.5,
        progress: bool = False,
    ) -> list[FileResult]:
        """An item's files in dest, whatever its storage tier, checksums verified: an orderable (offline) item is
        retrieved, polled until online and its retrieval downloaded; an online one is ordered and downloaded."""
        if (item.get("properties") or {}).get("order:status") == "orderable":
            retrieval = self.retrieve(item)
            self.wait_online(item, retrieval["id"], timeout, interval)
            return self.download(self.wait(retrieval["id"], timeout, interval), dest, progress=progress)
        placed = self.order([(item["collection"], item["id"])], assets=assets)
        return self.download(self.wait(placed["id"], timeout, interval), dest, progress=progress)

    # ------------------------------------------------------------------ downloads

    def download(
        self,
        order: dict | str,
        dest: str | Path,
        *,
        parallel: int = 4,
        progress: bool = True,
        max_bytes: int | None = None,
        strict: bool = True,
    ) -> list[FileResult]:
        """Download the order's ready files into dest: resumes .part files, verifies checksums, skips files
        already present and verified. `max_bytes` stops each transfer after that many bytes (Interrupted; for
        tests and for bounded sessions). With `strict`, a failed or canceled order raises OrderFailed."""
        if isinstance(order, str):
            order = self.status(order)
        if strict and order["status"] in ("failed", "canceled"):
            raise OrderFailed(
                409,
                f"order {order['id']} {order['status']}: {order.get('reason')}",
                {"files": [f for f in order["files"] if f["state"] != "ready"]},
            )
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        files = [f for f in order["files"] if f["state"] == "ready"]
        bar = _Progress(progress)
        with bar, ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = [
                pool.submit(self.download_file, f, dest, bar.task(f["name"], f.get("size")), max_bytes) for f in files
            ]
            return [fut.result() for fut in futures]

    def download_file(
        self, file: dict, dest: Path, advance: Callable[[int], None] | None = None, max_bytes: int | None = None
    ) -> FileResult:
        name = Path(file["name"]).name  # never a path from the server
        target, part = Path(dest) / name, Path(dest) / (name + ".part")
        checksum = (file.get("checksum") or "").lower()
        expected = checksum[4:] if checksum.startswith("1220") else None
        advance = advance or (lambda n: None)
        if target.exists() and expected and sha256_file(target).hexdigest() == expected:
            advance(target.stat().st_size)
            return FileResult(name, target, target.stat().st_size, 0, True)
        transferred = 0
        if part.exists():
            advance(part.stat().st_size)
        try:
            for attempt in self._retrying():
                with attempt:
                    transferred += self._transfer(
                        file, part, expected, advance, None if max_bytes is None else max_bytes - transferred
                    )
        except httpx.TransportError as exc:
            raise Unreachable(self._url(file["href"]), transport_reason(exc), self.retries) from exc
        digest = sha256_file(part).hexdigest()
        if expected and digest != expected:
            part.unlink(missing_ok=True)
            raise ChecksumMismatch(0, f"{name}: expected sha-256 {expected}, got {digest}")
        os.replace(part, target)
        return FileResult(name, target, target.stat().st_size, transferred, False)

    def _transfer(self, file: dict, part: Path, expected: str | None, advance, budget: int | None) -> int:
        offset = part.stat().st_size if part.exists() else 0
        headers = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if expected:
                headers["If-Range"] = f'"{expected}"'
        got = 0
        with self.http.stream("GET", file["href"], headers=headers) as resp:
            if resp.status_code == 416:  # the .part is already whole (or longer): check it, else start again
                resp.read()
                size = file.get("size")
                if size is not None and offset > size:
                    part.unlink()
                return 0
            if resp.status_code >= 400:
                resp.read()
            raise_for_problem(resp)
            mode = "ab" if resp.status_code == 206 else "wb"
            if mode == "wb" and offset:
                advance(-offset)  # the server sent the whole file: the partial copy is replaced
            with open(part, mode) as out:
                for chunk in resp.iter_bytes(CHUNK):
                    if budget is not None and got + len(chunk) >= budget:
                        out.write(chunk[: budget - got])
                        advance(budget - got)
                        raise Interrupted(f"{part.name}: stopped after {budget} bytes")
                    out.write(chunk)
                    got += len(chunk)
                    advance(len(chunk))
        return got


class _Progress:
    """rich progress bars (one per file), or nothing."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.progress = None
        if enabled:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )

    def __enter__(self):
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()

    def task(self, name: str, total: int | None) -> Callable[[int], None]:
        progress = self.progress
        if not progress:
            return lambda n: None
        tid = progress.add_task(name, total=total)
        return lambda n: progress.advance(tid, n)


def _flat(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value


class FreeTextSearch:
    """A federated item search with free text, paged through the service's next links."""

    def __init__(self, client: Client, params: dict):
        self.client = client
        self.max_items = params.pop("max_items", None)
        self.params = {k: _flat(v) for k, v in params.items()}
        self.expansion: dict | None = None

    def pages_as_dicts(self) -> Iterator[dict]:
        for page in self.client.pages("/search/search", params=self.params):
            self.expansion = page.get("expansion", self.expansion)
            yield page
            if not page.get("features"):
                return

    def items_as_dicts(self) -> Iterator[dict]:
        count = 0
        for page in self.pages_as_dicts():
            for item in page.get("features", []):
                if self.max_items is not None and count >= self.max_items:
                    return
                count += 1
                yield item
