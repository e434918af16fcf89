"""The harmonised dataset catalog: every provider's collections in one STAC Collection shape.

EODAG providers are described offline from EODAG's own files: `resources/collections.yml` (title, description,
keywords, license, extent, platform, instruments, processing level of about 400 collections) and each provider's
`resources/providers/<name>.yml` (which collections it serves, its priority). STAC providers are described by
their own `/collections`. A collection served by several providers is one record whose `federation:backends`
lists them, highest priority first.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)
BACKENDS = "federation:backends"
SUMMARY_KEYS = ("platform", "constellation", "instruments", "processing:level")


@cache
def eodag_resources() -> Path:
    import eodag

    return Path(eodag.__file__).parent / "resources"


_FastestSafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Tolerant(_FastestSafeLoader):  # type: ignore[misc]  # the C loader when libyaml is there
    """EODAG's provider files carry custom tags (plugins, jsonpath): read them as plain values."""


_Tolerant.add_multi_constructor(
    "",
    lambda loader, suffix, node: (
        loader.construct_mapping(node)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_sequence(node)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_scalar(node)
    ),
)


@cache
def eodag_collections() -> dict[str, dict[str, Any]]:
    with open(eodag_resources() / "collections.yml", encoding="utf-8") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}


@cache
def eodag_provider(name: str) -> tuple[int, list[str]]:
    """(priority, collection ids) of an EODAG built-in provider; unknown: (0, [])."""
    path = eodag_resources() / "providers" / f"{name}.yml"
    if not path.exists():
        log.warning("no EODAG provider file", extra={"provider": name})
        return 0, []
    with open(path, encoding="utf-8") as f:
        config = (yaml.load(f, Loader=_Tolerant) or {}).get(name) or {}
    products = {**(config.get("products") or {})}
    for section in ("search", "api"):
        products.update((config.get(section) or {}).get("products") or {})
    known = eodag_collections()
    return int(config.get("priority") or 0), sorted(p for p in products if p in known)


def from_eodag(cid: str, meta: dict[str, Any]) -> dict[str, Any]:
    summaries = {key: _as_list(meta.get(key)) for key in SUMMARY_KEYS if _as_list(meta.get(key))}
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": cid,
        "title": meta.get("title") or cid,
        "description": " ".join(str(meta.get("description") or meta.get("title") or cid).split()),
        "keywords": [str(k) for k in meta.get("keywords") or []],
        "license": meta.get("license") or "other",
        "extent": meta.get("extent")
        or {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
        "summaries": summaries,
        "links": [],
    }


def from_stac(collection: dict[str, Any]) -> dict[str, Any]:
    """A provider's STAC collection, with platform/instrument/level gathered into summaries."""
    record = {k: v for k, v in collection.items() if k not in ("links", BACKENDS, "federation")}
    summaries = {k: _as_list(v) for k, v in (collection.get("summaries") or {}).items()}
    for key in SUMMARY_KEYS:
        values = summaries.get(key) or _as_list(collection.get(key))
        if values:
            summaries[key] = values
    record.update(
        {
            "type": "Collection",
            "stac_version": collection.get("stac_version", "1.0.0"),
            "keywords": [str(k) for k in collection.get("keywords") or []],
            "license": collection.get("license") or "other",
            "summaries": summaries,
            "links": [],
        }
    )
    return record


def _as_list(value: Any) -> list[str]:
    """Summaries as lists of strings: EODAG writes 'S2A,S2B' or ['MSI'], STAC summaries may be ranges."""
    if value is None or isinstance(value, dict):
        return []
    values = value if isinstance(value, list) else str(value).split(",")
    return [str(v).strip() for v in values if str(v).strip()]


def merge(sources: list[tuple[str, int, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One record per collection id from (provider, priority, records) lists; the first provider's metadata wins,
    providers ordered by priority (higher first), then as configured."""
    ordered = sorted(enumerate(sources), key=lambda s: (-s[1][1], s[0]))
    merged: dict[str, dict[str, Any]] = {}
    for _, (provider, priority, records) in ordered:
        for record in records:
            entry = merged.setdefault(record["id"], {**record, BACKENDS: [], "federation:priority": {}})
            if provider not in entry[BACKENDS]:
                entry[BACKENDS].append(provider)
                entry["federation:priority"][provider] = priority
    return sorted(merged.values(), key=lambda r: r["id"])
