"""Load STAC collections and items into pgstac (`eolake ingest PATH...`).

Sources: `.ndjson`/`.jsonl` files (one STAC object per line); other files as one JSON document (a Collection,
an Item, a FeatureCollection/ItemCollection, or a static catalog root: a Catalog or Collection whose local
`child`/`item` links are followed, relative hrefs resolved from the linking file, never over the network);
directories (their top-level .json/.ndjson files, sorted). A file reached twice is read once.

Everything is read and validated before anything is written. Rejected: unparsable JSON; objects that are not a
valid STAC Item or Collection (stac-pydantic models); missing ids or ids with characters that break API URLs
(`/ ? # : \\`, whitespace, control characters); items without a geometry (pgstac needs one); items whose
collection is neither in the database nor valid in this load; a second item with the same (collection, id) in
one load, and a second, different collection with the same id (identical copies are merged).

Policy: by default rejected records are skipped and reported and the valid ones are loaded. With
`strict=True`, any rejection refuses the whole load: nothing is written and the report has `refused=True`;
the writes of a strict load also share one transaction, so a database error leaves nothing behind either.

Writing is an idempotent upsert: collections first (pgstac's `upsert_collection`), then items in batches of
`batch_size` with pypgstac's Loader (`Methods.upsert`), each batch in one transaction, so a failing batch
leaves nothing of itself behind and its items are reported. Loading the same ids again updates them. The
Loader is used rather than pgstac's `upsert_items` SQL function because it is about 15 times faster (it
dehydrates items in Python and COPYs them).

Links with a relation the API builds itself (self, root, parent, child, item(s), collection, queryables,
next, prev) are dropped, local or remote: they point into the source (a static tree, another API), and the
catalog makes its own. Other links (license, via, describedby…) are kept. Records are held in memory between the
validation and the write (fine for a few hundred thousand items; larger loads should be split).

The collections written get the indexed queryables their summaries call for (eolake_catalog.schema), once their
items are in.
"""

from __future__ import annotations

import functools
import gc
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import jsonschema_rs
import orjson
import psycopg
import pystac.validation
from psycopg.pq import TransactionStatus
from pydantic import ValidationError
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods
from pystac.utils import make_absolute_href
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from stac_pydantic import Collection, Item
from stac_pydantic.shared import validate_bbox

from eolake_catalog.schema import index_collections
from eolake_kit.stac import extent_problem

NDJSON_SUFFIXES = {".ndjson", ".jsonl"}
# Relations the API builds itself: copies from the source (another API, a static tree) would mislead users.
API_RELS = {"self", "root", "parent", "child", "item", "items", "collection", "queryables", "next", "prev"}
BAD_ID = re.compile(r"[/?#:\\\s\x00-\x1f\x7f]")
LOOSE_COLLECTION_ERROR = "not fully contained in `Overall BBOX`"
BATCH_SIZE = 10_000  # items per transaction, as pypgstac's chunks: each batch also costs pgstac a partition scan
SCHEMAS = Path(pystac.validation.__file__).parent / "jsonschemas"
STAC_SCHEMAS = "https://schemas.stacspec.org/v1.1.0/"
GEOJSON_SCHEMAS = "https://geojson.org/schema/"


class IngestError(Exception):
    """A source that cannot be read at all (missing path, unreadable file)."""


@dataclass(frozen=True)
class Rejection:
    file: str
    line: int | None
    id: str | None
    reason: str
    json_path: str | None = None

    def location(self) -> str:
        suffix = f":{self.line}" if self.line else f" ({self.json_path})" if self.json_path else ""
        return f"{self.file}{suffix}"


@dataclass
class IngestReport:
    collections_loaded: int = 0
    items_loaded: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    refused: bool = False
    seconds: float = 0.0
    strict: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def items_per_second(self) -> float:
        return self.items_loaded / self.seconds if self.seconds > 0 else 0.0

    @property
    def policy(self) -> str:
        if self.strict:
            return "strict: any rejected record refuses the whole load"
        return "default: rejected records are skipped and reported, valid ones are loaded"


@dataclass
class _Record:
    obj: Any
    file: Path
    line: int | None = None
    json_path: str | None = None

    def reject(self, reason: str) -> Rejection:
        obj_id = self.obj.get("id") if isinstance(self.obj, dict) else None
        return Rejection(str(self.file), self.line, obj_id if isinstance(obj_id, str) else None, reason, self.json_path)


class _Reader:
    """Turns source paths into records, collecting parse rejections and warnings on the way."""

    def __init__(self, report: IngestReport) -> None:
        self.report = report
        self.seen: set[Path] = set()

    def read(self, sources: Sequence[Path]) -> Iterator[_Record]:
        for source in map(Path, sources):
            if not source.exists():
                raise IngestError(f"{source}: no such file or directory")
            if source.is_dir():
                files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix in NDJSON_SUFFIXES | {".json"})
            else:
                files = [source]
            for path in files:
                yield from self._file(path)

    def _file(self, path: Path) -> Iterator[_Record]:
        path = path.resolve()
        if path in self.seen:
            return
        self.seen.add(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IngestError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if path.suffix in NDJSON_SUFFIXES:
            for number, raw in enumerate(data.splitlines(), start=1):
                if raw.strip():
                    yield from self._parsed(raw, _Record(None, path, line=number))
        else:
            yield from self._parsed(data, _Record(None, path), follow_links=True)

    def _parsed(self, raw: bytes, record: _Record, follow_links: bool = False) -> Iterator[_Record]:
        try:
            record.obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self.report.rejected.append(record.reject(f"invalid JSON: {exc}"))
            return
        obj = record.obj
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind == "FeatureCollection" and isinstance(obj.get("features"), list):
            for index, feature in enumerate(obj["features"]):
                yield _Record(feature, record.file, record.line, f"features[{index}]")
            return
        links = list(obj.get("links") or []) if follow_links and kind in ("Catalog", "Collection") else []
        if kind != "Catalog":
            yield record  # the consumer may rewrite its links: follow the original ones
        yield from self._links(links, record.reject("").id, record.file)

    def _links(self, links: list, obj_id: str | None, path: Path) -> Iterator[_Record]:
        for link in links:
            if not isinstance(link, dict) or link.get("rel") not in ("child", "item"):
                continue
            href = link.get("href")
            target = _local_path(href, path) if isinstance(href, str) else None
            if target is None:
                self.report.warnings.append(f"{path}: {link['rel']} link {href!r} not followed (not local)")
            elif not target.is_file():
                self.report.rejected.append(
                    Rejection(str(path), None, obj_id, f"{link['rel']} link {href!r}: {target} not found")
                )
            else:
                yield from self._file(target)


def _local_path(href: str, base: Path) -> Path | None:
    scheme = urlparse(href).scheme
    if scheme == "file":
        return Path(unquote(urlparse(href).path))
    if scheme and len(scheme) > 1:  # one letter would be a Windows drive
        return None
    return Path(make_absolute_href(href, str(base)))


def _id_problem(value: Any, what: str = "id") -> str | None:
    if value is None or value == "":
        return f"missing {what}"
    if not isinstance(value, str):
        return f"{what} must be a string, not {type(value).__name__}"
    if BAD_ID.search(value):
        return f"{what} {value!r} contains a character not allowed in ids (/ ? # : \\ whitespace, control)"
    return None


def _describe(exc: ValidationError, skip: str | None = None) -> str:
    messages: list[str] = []
    for error in exc.errors():
        if skip and skip in error["msg"]:
            continue
        loc = ".".join(str(part) for part in error["loc"] if "[" not in str(part))
        message = f"{loc}: {error['msg']}" if loc else error["msg"]
        if message not in messages:
            messages.append(message)
    return "; ".join(messages[:4]) + (f" (+{len(messages) - 4} more)" if len(messages) > 4 else "")


@functools.cache
def _item_schema() -> jsonschema_rs.Validator:
    """The STAC 1.1 Item JSON schema (pystac's copy, read offline), compiled: what a valid item looks like, checked in
    Rust. It admits the STAC versions stac-pydantic admits (the schema itself names only 1.1.0)."""

    def local(uri: str) -> dict:
        if uri.startswith(GEOJSON_SCHEMAS):
            return _schema_file(SCHEMAS / "geojson" / uri.removeprefix(GEOJSON_SCHEMAS))
        if uri.startswith(STAC_SCHEMAS):
            return _schema_file(SCHEMAS / "stac-spec" / "v1.1.0" / uri.rsplit("/", 1)[-1])
        raise ValueError(f"{uri}: not a schema eolake holds (schemas are never fetched)")

    schema = _schema_file(SCHEMAS / "stac-spec" / "v1.1.0" / "item.json")
    return jsonschema_rs.validator_for(_any_stac_version(schema), retriever=local, validate_formats=True)


def _schema_file(path: Path) -> dict:
    return json.loads(path.read_text())


def _any_stac_version(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: {"type": "string"}
            if key == "stac_version" and isinstance(value, dict) and "const" in value
            else _any_stac_version(value)
            for key, value in node.items()
        }
    return [_any_stac_version(value) for value in node] if isinstance(node, list) else node


def _item_problem(obj: dict) -> str | None:
    """Why an item is invalid, or None. Valid items (nearly all) are known valid by the compiled schema alone;
    stac-pydantic, ten times slower, runs only for those the schema refuses, and words the reason."""
    if _item_schema().is_valid(obj):
        props = obj["properties"]
        start, end = props.get("start_datetime"), props.get("end_datetime")
        try:
            validate_bbox(obj.get("bbox"))
        except ValueError as exc:
            return f"invalid STAC Item: bbox: {exc}"
        if start and end and _instant(start) > _instant(end):
            return "invalid STAC Item: start_datetime is after end_datetime"
        return None
    try:
        props = Item.model_validate(obj).properties
        validate_bbox(obj.get("bbox"))
    except ValidationError as exc:
        return f"invalid STAC Item: {_describe(exc)}"
    except ValueError as exc:
        return f"invalid STAC Item: bbox: {exc}"
    if props.start_datetime and props.end_datetime and props.start_datetime > props.end_datetime:
        return "invalid STAC Item: start_datetime is after end_datetime"
    return None


def _instant(value: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _check(record: _Record, warnings: list[str]) -> str | None:
    """The reason to reject `record`, or None when it is a loadable Item or Collection."""
    obj = record.obj
    if not isinstance(obj, dict):
        return "not a JSON object"
    kind = obj.get("type")
    if kind not in ("Feature", "Collection"):
        return f"not a STAC Item or Collection (type {kind!r})"
    if problem := _id_problem(obj.get("id")):
        return problem
    if kind == "Collection":
        try:
            Collection.model_validate(obj)
        except ValidationError as exc:
            # stac-pydantic requires sub-extents inside the first bbox; real catalogs (Planetary Computer's
            # NAIP) do not honour that and pgstac does not need it, so it only warns.
            if reason := _describe(exc, skip=LOOSE_COLLECTION_ERROR):
                return f"invalid STAC Collection: {reason}"
            warnings.append(f"{record.reject('').location()}: collection {obj['id']}: {_describe(exc)}")
        return f"invalid STAC Collection: {problem}" if (problem := extent_problem(obj)) else None
    if problem := _item_problem(obj):
        return problem
    if obj.get("geometry") is None:
        return "item has no geometry (pgstac needs one)"
    return _id_problem(obj.get("collection"), "collection")


def _strip_api_links(obj: dict) -> dict:
    links = obj.get("links")
    if isinstance(links, list):
        obj["links"] = [link for link in links if not (isinstance(link, dict) and link.get("rel") in API_RELS)]
    return obj


def _existing_collections(conn: psycopg.Connection, ids: set[str]) -> set[str]:
    rows = conn.execute("SELECT id FROM collections WHERE id = ANY(%s)", (list(ids),)).fetchall()
    return {row[0] for row in rows}


def ingest(
    sources: Sequence[Path],
    dsn: str,
    *,
    strict: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
    lock_seconds: float = 30,
) -> IngestReport:
    """Validate every record of `sources`, then upsert collections and items into pgstac (see module doc)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    with _no_cycle_collection():
        return _ingest(sources, dsn, strict, batch_size, progress, lock_seconds)


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector off while the records are read, held and written: hundreds of thousands of fresh
    dicts kept alive would make it sweep them again and again (half of an ingest's time, measured); they hold no
    cycles, and reference counting frees them as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _ingest(
    sources: Sequence[Path], dsn: str, strict: bool, batch_size: int, progress: bool, lock_seconds: float
) -> IngestReport:
    started = time.perf_counter()
    report = IngestReport(strict=strict)
    collections: dict[str, _Record] = {}
    items: dict[tuple[str, str], _Record] = {}
    for record in _Reader(report).read(sources):
        if reason := _check(record, report.warnings):
            report.rejected.append(record.reject(reason))
            continue
        obj = _strip_api_links(record.obj)
        if obj["type"] == "Collection":
            first = collections.setdefault(obj["id"], record)
            if first is not record and first.obj != obj:
                report.rejected.append(
                    record.reject(
                        f"duplicate collection id {obj['id']!r}, different from {first.reject('').location()}"
                    )
                )
        else:
            first = items.setdefault((obj["collection"], obj["id"]), record)
            if first is not record:
                report.rejected.append(
                    record.reject(
                        f"duplicate item id {obj['id']!r} in collection {obj['collection']!r}, "
                        f"first seen at {first.reject('').location()}"
                    )
                )

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")  # pypgstac's Loader names pgstac objects unqualified
        # A lock held elsewhere (a long transaction, a stuck backend) fails the load instead of hanging it.
        conn.execute(
            psycopg.sql.SQL("SET lock_timeout = {}").format(psycopg.sql.Literal(f"{round(lock_seconds * 1000)}ms"))
        )
        needed = {collection for collection, _ in items} - set(collections)
        known = set(collections) | _existing_collections(conn, needed)
        for key, record in list(items.items()):
            if key[0] not in known:
                reason = f"collection {key[0]!r} is not in the database or this load"
                report.rejected.append(record.reject(reason))
                del items[key]
        if strict and report.rejected:
            report.refused = True
        else:
            _write(conn, list(collections.values()), list(items.values()), report, batch_size, progress)
    if report.collections_loaded:  # after the commit: their items are in, each index is built in one pass
        index_collections(dsn, collections)
    report.seconds = time.perf_counter() - started
    return report


class _OwnConnection(PgstacDB):
    """PgstacDB over a connection we manage: its own connect() opens a pool that is never closed."""

    def connect(self) -> psycopg.Connection:
        return self.connection


class _Refused(Exception):
    """Raised inside a strict load's transaction to roll all of it back."""


def _write(
    conn: psycopg.Connection,
    collections: list[_Record],
    items: list[_Record],
    report: IngestReport,
    batch_size: int,
    progress: bool,
) -> None:
    loader = Loader(_OwnConnection(connection=conn))
    bar = Progress(
        TextColumn("ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not progress,
    )
    # Strict: one outer transaction, so each batch's transaction becomes a savepoint and a failure undoes all.
    try:
        with conn.transaction() if report.strict else nullcontext(), bar:
            failed: set[str] = set()
            for record in collections:
                payload = orjson.dumps(record.obj).decode()
                if _atomic(
                    conn,
                    report,
                    [record],
                    "collection",
                    lambda p=payload: conn.execute("SELECT upsert_collection(%s::jsonb)", (p,)),
                ):
                    report.collections_loaded += 1
                else:
                    failed.add(record.obj["id"])
            pending = [r for r in items if r.obj["collection"] not in failed]
            report.rejected += [
                r.reject(f"collection {r.obj['collection']!r} failed to load")
                for r in items
                if r.obj["collection"] in failed
            ]
            task = bar.add_task("items", total=len(pending))
            for number, start in enumerate(range(0, len(pending), batch_size), start=1):
                batch = pending[start : start + batch_size]
                objs = [r.obj for r in batch]
                if _atomic(
                    conn,
                    report,
                    batch,
                    f"batch {number}",
                    lambda o=objs: loader.load_items(iter(o), insert_mode=Methods.upsert, chunksize=len(o)),
                ):
                    report.items_loaded += len(batch)
                bar.advance(task, len(batch))
    except _Refused:
        report.refused = True
        report.collections_loaded = report.items_loaded = 0


def _atomic(
    conn: psycopg.Connection, report: IngestReport, records: list[_Record], what: str, write: Callable[[], object]
) -> bool:
    """Run `write` in one transaction; on failure reject `records` (and refuse a strict load)."""
    try:
        with conn.transaction():
            write()
            # pypgstac logs some errors instead of raising them, leaving the transaction aborted.
            if conn.info.transaction_status == TransactionStatus.INERROR:
                raise psycopg.errors.InFailedSqlTransaction("transaction aborted by an earlier error")
        return True
    except psycopg.errors.LockNotAvailable:
        raise  # not the data's fault: the whole load stops (batches already written stay, upserts are idempotent)
    # pypgstac raises plain Exception for data it cannot convert (geometry, datetimes).
    except Exception as exc:  # noqa: BLE001
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        report.rejected.extend(record.reject(f"database refused {what}: {reason}") for record in records)
        if report.strict:
            raise _Refused from exc
        return False


def format_report(report: IngestReport, limit: int = 50) -> str:
    """A plain-text summary for the command line."""
    if report.refused:
        lines = [f"REFUSED: nothing written, {len(report.rejected)} record(s) rejected (strict mode)."]
    else:
        lines = [
            f"Loaded {report.collections_loaded} collection(s) and {report.items_loaded} item(s) "
            f"in {report.seconds:.2f} s ({report.items_per_second:.0f} items/s); "
            f"{len(report.rejected)} record(s) rejected."
        ]
    lines.append(f"Policy: {report.policy}.")
    lines += [f"warning: {warning}" for warning in report.warnings[:limit]]
    for rejection in report.rejected[:limit]:
        label = f" [{rejection.id}]" if rejection.id else ""
        lines.append(f"rejected {rejection.location()}{label}: {rejection.reason}")
    if len(report.rejected) > limit:
        lines.append(f"... and {len(report.rejected) - limit} more rejection(s)")
    return "\n".join(lines)
