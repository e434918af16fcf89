"""The search benchmark's corpus: EODAG's collection metadata (offline) plus eolake's demo collections.

One `Doc` per collection with the fields a dataset search looks at. The same corpus is loaded into a stock
pgstac database as STAC collections (`stac_collection`), so every target searches the same metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import eodag
import yaml

from eolake.paths import SHARED_DATA

EODAG_COLLECTIONS = Path(eodag.__file__).parent / "resources" / "collections.yml"
PC_COLLECTIONS = SHARED_DATA / "stac" / "pc-collections" / "collections.ndjson"
DEMO_SOURCE = "eolake-demo"
GENERIC = "GENERIC_COLLECTION"  # EODAG's placeholder for unknown collections, never a guess
EODAG_SOURCE = "eodag"


@dataclass(frozen=True)
class Doc:
    id: str
    source: str  # "eodag" or "eolake-demo"
    title: str
    description: str
    keywords: tuple[str, ...]
    platform: str
    instruments: tuple[str, ...]
    processing_level: str
    license: str
    extent: dict

    def text(self) -> str:
        """Every searchable field in one lower-cased string (for the candidate search used when judging)."""
        return " ".join(
            [
                self.id,
                self.title,
                self.description,
                " ".join(self.keywords),
                self.platform,
                " ".join(self.instruments),
                self.processing_level,
            ]
        ).lower()


def _as_tuple(value) -> tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)


def _eodag_doc(cid: str, meta: dict) -> Doc:
    platform = ", ".join(p for p in (meta.get("constellation"), meta.get("platform")) if p)
    return Doc(
        cid,
        EODAG_SOURCE,
        meta.get("title") or cid,
        (meta.get("description") or "").strip(),
        _as_tuple(meta.get("keywords")),
        platform,
        _as_tuple(meta.get("instruments")),
        str(meta.get("processing:level") or ""),
        str(meta.get("license") or ""),
        meta.get("extent") or {},
    )


def eodag_docs() -> list[Doc]:
    with open(EODAG_COLLECTIONS, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    return [_eodag_doc(cid, meta) for cid, meta in raw.items() if isinstance(meta, dict) and cid != GENERIC]


def _stac_doc(col: dict) -> Doc:
    summaries = col.get("summaries") or {}
    platform = ", ".join(str(p) for p in summaries.get("platform", []) + summaries.get("constellation", []))
    instruments = _as_tuple(summaries.get("instruments"))
    level = ", ".join(str(v) for v in summaries.get("processing:level", []))
    return Doc(
        col["id"],
        DEMO_SOURCE,
        col.get("title") or col["id"],
        (col.get("description") or "").strip(),
        _as_tuple(col.get("keywords")),
        platform,
        instruments,
        level,
        str(col.get("license") or ""),
        col.get("extent") or {},
    )


def demo_collections() -> list[dict]:
    """The collections `eolake up` loads as demo data: the sample Planetary Computer ones and the hydrology demo."""
    from eolake.demo.garonne import STATIONS
    from eolake.demo.hydrology import collections as hydrology_collections
    from eolake.demo.hydrology import hydroweb_text, station_item

    sample = [json.loads(line) for line in PC_COLLECTIONS.read_text().splitlines() if line.strip()]
    stations = [station_item(s, f"/demo/{s.id}.txt", hydroweb_text(s).encode()) for s in STATIONS]
    # through JSON as eolake writes them to ndjson: the generated extents hold numpy floats
    return sample + json.loads(json.dumps(hydrology_collections(stations), default=float))


@cache
def load_corpus() -> tuple[Doc, ...]:
    docs = [*(_stac_doc(c) for c in demo_collections()), *eodag_docs()]
    ids = [d.id for d in docs]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ValueError(f"duplicate collection ids in the corpus: {sorted(duplicates)}")
    return tuple(docs)


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


WORLD = [-180.0, -90.0, 180.0, 90.0]


def _lon_lat(bbox) -> bool:
    """A few EODAG extents are in projected metres, not degrees: those are replaced by the whole world."""
    west, south, east, north = bbox[0], bbox[1], bbox[-2], bbox[-1]
    return -180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90


def stac_collection(doc: Doc) -> dict:
    """The doc as a STAC collection (for stock pgstac): same title, description and keywords."""
    bbox = [b for b in (doc.extent.get("spatial") or {}).get("bbox") or [] if _lon_lat(b)] or [WORLD]
    interval = (doc.extent.get("temporal") or {}).get("interval") or [[None, None]]
    summaries = {
        k: v
        for k, v in (
            ("platform", [doc.platform] if doc.platform else []),
            ("instruments", list(doc.instruments)),
            ("processing:level", [doc.processing_level] if doc.processing_level else []),
        )
        if v
    }
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": doc.id,
        "title": doc.title,
        "description": doc.description or doc.title,
        "keywords": list(doc.keywords),
        "license": doc.license or "other",
        "links": [],
        "summaries": summaries,
        "extent": {
            "spatial": {"bbox": [list(b) for b in bbox]},
            "temporal": {"interval": [[_iso(a), _iso(b)] for a, b in interval]},
        },
    }
