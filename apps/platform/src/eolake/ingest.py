"""Load STAC collections and items into pgstac (`eolake ingest PATH...`).

Sources: `.ndjson`/`.jsonl` files (one STAC object per line); other files as one JSON document (a Collection,
an Item, a FeatureCollection/ItemCollection, or a static catalog root: a Catalog or Collection whose local
`child`/`item` links are followed, relative hrefs resolved from the linking file, never over the network);
directories (their top-level .json/.ndjson files, sorted). A file reached twice is read once.

Every record is validated: items against the STAC 1.1 Item JSON schema compiled in Rust (stac-pydantic words the
reason of a refusal), collections with stac-pydantic. Rejected: unparsable JSON; objects that are not a valid STAC
Item or Collection; missing ids or ids with characters that break API URLs
(`/ ? # : \\`, whitespace, control characters); items without a geometry (pgstac needs one); items whose
collection is neither in the database nor valid in this load; a second item with the same (collection, id) in
one load, and a second, different collection with the same id (identical copies are merged).

Policy: by default rejected records are skipped and reported and the valid ones are loaded. With
`strict=True`, any rejection refuses the whole load: the writes of a strict load share one transaction, rolled back
at the first database error or once the records are all checked if any was rejected, so nothing of it is ever
visible, and the report has `refused=True`.

The load is streamed (`_Load`): records are checked as they are read and items written in batches while the next
ones are read. Writing is an idempotent upsert: each collection (pgstac's `upsert_collection`) before the first
batch holding its items, items in batches of `batch_size`, each batch in one transaction, so a failing batch
leaves nothing of itself behind and its items are reported. Loading the same ids again updates the rows that
changed and leaves the others untouched. Items are written as pypgstac's loader writes them (pgstac's SQL
`upsert_items` is about 15 times slower): dehydrated against their collection's base item (hydraters, in Rust),
COPYed into a staging table, the partition made or widened by pgstac's `check_partition`, inserted (the GeoJSON
geometry converted by PostGIS), and the partition's statistics refreshed.

Links with a relation the API builds itself (self, root, parent, child, item(s), collection, queryables,
next, prev) are dropped, local or remote: they point into the source (a static tree, another API), and the
catalog makes its own. Other links (license, via, describedby…) are kept. Only a batch, the items waiting for a
collection not read yet and the (collection, id) pairs seen are held in memory.

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
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import hydraters
import jsonschema_rs
import orjson
import psycopg
import pystac.validation
from pydantic import ValidationError
from pystac.utils import make_absolute_href
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from stac_pydantic import Collection, Item
from stac_pydantic.shared import validate_bbox

from eolake_catalog.schema import index_collections
from eolake_kit.stac import collection_problem

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
        self.expected = 0  # records announced so far (lines of the files read): the progress bar's total

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
        self.expected += data.count(b"\n") + 1 if path.suffix in NDJSON_SUFFIXES else 1
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
    Rust, as a loader reads it (`_loader_schema`)."""

    def local(uri: str) -> dict:
        if uri.startswith(GEOJSON_SCHEMAS):
            return _schema_file(SCHEMAS / "geojson" / uri.removeprefix(GEOJSON_SCHEMAS))
        if uri.startswith(STAC_SCHEMAS):
            return _schema_file(SCHEMAS / "stac-spec" / "v1.1.0" / uri.rsplit("/", 1)[-1])
        raise ValueError(f"{uri}: not a schema eolake holds (schemas are never fetched)")

    schema = _schema_file(SCHEMAS / "stac-spec" / "v1.1.0" / "item.json")
    return jsonschema_rs.validator_for(_loader_schema(schema), retriever=local, validate_formats=True)


def _schema_file(path: Path) -> dict:
    return json.loads(path.read_text())


def _loader_schema(node: Any) -> Any:
    """The item schema with two rules a loader does not apply: `stac_version` may be any version (as stac-pydantic
    admits; the schema names only 1.1.0), and a `collection` field needs no `collection` link (the rule is about
    self-contained files; ingest drops such links anyway, the catalog builds its own)."""
    if isinstance(node, dict):
        if _is_collection_link_rule(node):
            return {"properties": {"collection": node["then"]["properties"]["collection"]}}
        return {
            key: {"type": "string"}
            if key == "stac_version" and isinstance(value, dict) and "const" in value
            else _loader_schema(value)
            for key, value in node.items()
        }
    return [_loader_schema(value) for value in node] if isinstance(node, list) else node


def _is_collection_link_rule(node: dict) -> bool:
    links = node.get("if", {}).get("properties", {}).get("links", {}) if isinstance(node.get("if"), dict) else {}
    return "collection" in node.get("then", {}).get("required", []) and "contains" in links


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


def _instant(value: str) -> datetime:
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
        return f"invalid STAC Collection: {problem}" if (problem := collection_problem(obj)) else None
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
    reader = _Reader(report)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")  # pgstac's objects, unqualified
        # A lock held elsewhere (a long transaction, a stuck backend) fails the load instead of hanging it.
        conn.execute(
            psycopg.sql.SQL("SET lock_timeout = {}").format(psycopg.sql.Literal(f"{round(lock_seconds * 1000)}ms"))
        )
        conn.execute(STAGING)
        load = _Load(conn, report, batch_size, lambda: reader.expected)
        # Strict: one outer transaction, so each batch's transaction becomes a savepoint and a rejection undoes all.
        try:
            with conn.transaction() if strict else nullcontext(), _progress_bar(progress) as bar, load.writing(bar):
                for record in reader.read(sources):
                    load.add(record)
                load.finish()
        except _Refused:
            report.refused = True
            report.collections_loaded = report.items_loaded = 0
    if report.collections_loaded:  # after the commit: their items are in, each index is built in one pass
        index_collections(dsn, load.collections)
    report.seconds = time.perf_counter() - started
    return report


def _progress_bar(shown: bool) -> Progress:
    return Progress(
        TextColumn("ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not shown,
    )


class _Load:
    """One load, streamed: records are checked as they are read, items gathered into batches and each full batch
    written while the next is read (a thread waits on PostgreSQL, without the GIL, while this one parses and
    validates: Python's work and the database's overlap on two cores).

    A collection is written before the first batch holding its items; items whose collection is neither in the
    database nor read yet wait for the end of the load (it may come later). A strict load stops writing at its
    first rejection and keeps checking, to report every rejection; its outer transaction is then rolled back."""

    def __init__(
        self, conn: psycopg.Connection, report: IngestReport, batch_size: int, expected: Callable[[], int]
    ) -> None:
        self.conn, self.report, self.batch_size, self.expected = conn, report, batch_size, expected
        self.collections: dict[str, _Record] = {}  # read in this load
        self.written: set[str] = set()  # collections of this load written
        self.failed: set[str] = set()  # collections of this load the database refused
        self.in_database: dict[str, bool] = {}
        self.targets: dict[str, _Target] = {}
        self.seen: dict[tuple[str, str], str] = {}  # (collection, id) -> where it was first read
        self.batch: list[_Record] = []
        self.waiting: dict[str, list[_Record]] = {}  # by collection: not known yet
        self.batches = self.done = 0
        self.in_flight: tuple[list[_Record], Future] | None = None

    @contextmanager
    def writing(self, bar: Progress) -> Iterator[None]:
        self.bar, self.task = bar, bar.add_task("items", total=None)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer") as self.writer:
            try:
                yield
            finally:
                if self.in_flight:  # an error stops the load: the batch under way ends before the connection does
                    wait([self.in_flight[1]])

    def add(self, record: _Record) -> None:
        if reason := _check(record, self.report.warnings):
            self.report.rejected.append(record.reject(reason))
            return
        obj = _strip_api_links(record.obj)
        if obj["type"] == "Collection":
            self._add_collection(record)
            return
        key = (obj["collection"], obj["id"])
        if first := self.seen.get(key):
            reason = f"duplicate item id {key[1]!r} in collection {key[0]!r}, first seen at {first}"
            self.report.rejected.append(record.reject(reason))
            return
        self.seen[key] = record.reject("").location()
        if key[0] in self.collections or self._in_database(key[0]):
            self.batch.append(record)
            if len(self.batch) >= self.batch_size:
                self._flush()
        else:
            self.waiting.setdefault(key[0], []).append(record)

    def finish(self) -> None:
        for collection, records in self.waiting.items():
            if collection in self.collections:
                self.batch += records
            else:
                reason = f"collection {collection!r} is not in the database or this load"
                self.report.rejected += [record.reject(reason) for record in records]
        self.waiting = {}
        while self.batch:
            self._flush()
        self._settle()
        if self.report.strict and self.report.rejected:
            raise _Refused
        self._write_collections(set(self.collections) - self.written)
        self.bar.update(self.task, total=self.done, completed=self.done)

    def _add_collection(self, record: _Record) -> None:
        first = self.collections.setdefault(record.obj["id"], record)
        if first is not record and first.obj != record.obj:
            reason = f"duplicate collection id {record.obj['id']!r}, different from {first.reject('').location()}"
            self.report.rejected.append(record.reject(reason))

    def _in_database(self, collection: str) -> bool:
        if collection not in self.in_database:
            self._settle()  # the connection is the writer's while a batch is under way
            found = self.conn.execute("SELECT 1 FROM collections WHERE id = %s", (collection,)).fetchone()
            self.in_database[collection] = found is not None
        return self.in_database[collection]

    def _flush(self) -> None:
        batch, self.batch = self.batch[: self.batch_size], self.batch[self.batch_size :]
        if self.report.strict and self.report.rejected:
            return  # refused already: nothing more to write, the checks go on
        needed = {r.obj["collection"] for r in batch}
        if unready := needed - self.targets.keys():
            self._settle()
            self._write_collections(unready & (self.collections.keys() - self.written))
            self.targets |= _targets(self.conn, unready - self.failed)
        refused = [r for r in batch if r.obj["collection"] in self.failed]
        self.report.rejected += [r.reject(f"collection {r.obj['collection']!r} failed to load") for r in refused]
        batch = [r for r in batch if r.obj["collection"] not in self.failed]
        groups = _row_groups(batch, self.targets)
        self._settle()
        self.batches += 1
        write = partial(_write_batch, self.conn, groups)
        job = self.writer.submit(_atomic, self.conn, self.report, batch, f"batch {self.batches}", write)
        self.in_flight = (batch, job)

    def _settle(self) -> None:
        if not self.in_flight:
            return
        batch, job = self.in_flight
        self.in_flight = None
        if job.result():  # re-raises what stops the load (a lock not granted, a strict load refused)
            self.report.items_loaded += len(batch)
        self.done += len(batch)
        self.bar.update(self.task, total=max(self.expected(), self.done), completed=self.done)

    def _write_collections(self, ids: set[str]) -> None:
        """Upsert these collections of the load, in the order read, each in its own transaction."""
        for cid in [cid for cid in self.collections if cid in ids]:
            record = self.collections[cid]
            payload = orjson.dumps(record.obj).decode()
            write = partial(self.conn.execute, "SELECT upsert_collection(%s::jsonb)", (payload,))
            if _atomic(self.conn, self.report, [record], "collection", write):
                self.report.collections_loaded += 1
            else:
                self.failed.add(cid)
            self.written.add(cid)


class _Refused(Exception):
    """Raised inside a strict load's transaction to roll all of it back."""


STAGING = """
CREATE TEMP TABLE IF NOT EXISTS eolake_ingest_staging (
    id text, collection text, datetime timestamptz, end_datetime timestamptz, geometry text, content jsonb,
    private jsonb
)
"""
# Unchanged rows are left as they are: no new row version, no index entries, nothing for VACUUM.
UPSERT = """
INSERT INTO {partition} AS t (id, collection, datetime, end_datetime, geometry, content, private)
SELECT s.id, s.collection, s.datetime, s.end_datetime, st_geomfromgeojson(s.geometry), s.content, s.private
FROM eolake_ingest_staging s
ON CONFLICT (id) DO UPDATE SET
    datetime = EXCLUDED.datetime, end_datetime = EXCLUDED.end_datetime, geometry = EXCLUDED.geometry,
    collection = EXCLUDED.collection, content = EXCLUDED.content, private = EXCLUDED.private
WHERE t IS DISTINCT FROM EXCLUDED
"""


@dataclass(frozen=True)
class _Target:
    """How a collection's items are stored: its base item (what dehydration leaves out) and partition period."""

    base_item: dict
    partition_trunc: str | None

    def partition_key(self, start: str) -> str:
        """Which of the collection's partitions an item starting at `start` goes to (its year or month in UTC)."""
        if not self.partition_trunc:
            return ""
        return _instant(start).astimezone(UTC).strftime("%Y" if self.partition_trunc == "year" else "%Y-%m")


@dataclass
class _Group:
    """The rows of one batch bound for one partition, as COPY text."""

    collection: str
    lines: list[bytes] = field(default_factory=list)


def _copy_text(value: bytes) -> bytes:
    """A JSON text as a COPY text field: orjson writes no tab, newline or carriage return, only backslashes need
    doubling."""
    return value.replace(b"\\", b"\\\\")


def _row_groups(records: list[_Record], targets: dict[str, _Target]) -> list[_Group]:
    """The items as pgstac stores them (dehydrated content, datetime range; the geometry as GeoJSON, converted by
    PostGIS), grouped by partition."""
    groups: dict[tuple[str, str], _Group] = {}
    for record in records:
        item = record.obj
        item_id, collection, geometry = item["id"], item["collection"], item["geometry"]
        target = targets[collection]
        props = item["properties"]
        start, end = props.get("start_datetime"), props.get("end_datetime")
        if not (start and end):
            start = end = props["datetime"]
        content = hydraters.dehydrate(target.base_item, item)  # takes the item apart, nested objects too
        record.obj = {"id": item_id, "collection": collection}  # what a rejection of its batch names
        for key in ("id", "collection", "geometry", "pgstac:base_item"):
            content.pop(key, None)
        private = content.pop("private", None)
        group = groups.setdefault((collection, target.partition_key(start)), _Group(collection))
        group.lines.append(
            b"\t".join(
                (
                    item_id.encode(),
                    collection.encode(),
                    start.encode(),
                    end.encode(),
                    _copy_text(orjson.dumps(geometry)),
                    _copy_text(orjson.dumps(content)),
                    b"\\N" if private is None else _copy_text(orjson.dumps(private)),
                )
            )
            + b"\n"
        )
    return list(groups.values())


def _targets(conn: psycopg.Connection, collections: set[str]) -> dict[str, _Target]:
    rows = conn.execute(
        "SELECT id, base_item, partition_trunc FROM collections WHERE id = ANY(%s)", (list(collections),)
    ).fetchall()
    return {cid: _Target(base_item, trunc) for cid, base_item, trunc in rows}


def _write_group(conn: psycopg.Connection, group: _Group) -> str:
    """Upsert one partition's rows: COPYed into a staging table, the partition made (or its constraints widened)
    by pgstac's check_partition for their time range, then inserted, skipping those unchanged."""
    conn.execute("TRUNCATE eolake_ingest_staging")
    with conn.cursor().copy(
        "COPY eolake_ingest_staging (id, collection, datetime, end_datetime, geometry, content, private) FROM STDIN"
    ) as copy:
        copy.write(b"".join(group.lines))
    partition = conn.execute(
        "SELECT check_partition(%s, tstzrange(min(datetime), max(datetime), '[]'),"
        " tstzrange(min(end_datetime), max(end_datetime), '[]')) FROM eolake_ingest_staging",
        (group.collection,),
    ).fetchone()[0]
    conn.execute(psycopg.sql.SQL("LOCK TABLE ONLY {} IN EXCLUSIVE MODE").format(psycopg.sql.Identifier(partition)))
    conn.execute(psycopg.sql.SQL(UPSERT).format(partition=psycopg.sql.Identifier(partition)))
    return partition


def _write_batch(conn: psycopg.Connection, groups: list[_Group]) -> None:
    for group in groups:
        partition = _write_group(conn, group)
        # The partition's extent, and the search cache's write counter of the collection (eolake_catalog.schema).
        conn.execute("SELECT update_partition_stats_q(%s)", (partition,))


def _atomic(
    conn: psycopg.Connection, report: IngestReport, records: list[_Record], what: str, write: Callable[[], object]
) -> bool:
    """Run `write` in one transaction; on failure reject `records` (and refuse a strict load)."""
    try:
        with conn.transaction():
            write()
        return True
    except psycopg.errors.LockNotAvailable:
        raise  # not the data's fault: the whole load stops (batches already written stay, upserts are idempotent)
    except psycopg.Error as exc:
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
