"""What the embedded platform prepares in its state directory before the services start: the local API keys, the
demo catalog and data, the demo vocabularies of the thesaurus."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from eolake.embedded.state import StateDir
from eolake.paths import SHARED_DATA

if TYPE_CHECKING:
    from eolake.demo import OfflineDemo

log = logging.getLogger("eolake.supervisor")


def ensure_api_keys(state: StateDir) -> None:
    """A local admin key and a demo user key, created once, kept (0600) in the state directory only."""
    for role, name in (("admin", "local-admin"), ("user", "demo-user")):
        key_file = state.key_file(role)
        if not key_file.exists():
            from eolake_kit.auth import create_api_key  # FastAPI underneath: only on the first start

            key = create_api_key(state.api_keys, name, role)
            key_file.touch(mode=0o600)
            key_file.write_text(key + "\n")


def load_demo(storage: Path, dsn: str, marker: Path, offline: OfflineDemo | None = None) -> None:
    """The generated hydrology (files under `storage`, a few in the `offline` tier) and the sample catalog, into
    the database; `marker` records it was done."""
    from eolake.demo import generate_hydrology
    from eolake.ingest import ingest

    sources = generate_hydrology(storage / "demo" / "hydrology", offline)
    collections, naip = SHARED_DATA / "stac/pc-collections/collections.ndjson", SHARED_DATA / "stac/naip/items.ndjson"
    if collections.exists() and naip.exists():
        sources = [collections, *sources, naip]
    else:
        log.warning("sample data not found at %s: loading the generated hydrology demo only", SHARED_DATA)
    report = ingest(sources, dsn)
    log.info(
        "demo data loaded",
        extra={
            "collections": report.collections_loaded,
            "items": report.items_loaded,
            "rejected": len(report.rejected),
        },
    )
    marker.write_text(json.dumps({"collections": report.collections_loaded, "items": report.items_loaded}))


def load_thesauri(state: StateDir) -> None:
    """GEMET (en + fr) and INSPIRE themes into the thesaurus index, once: the service itself only reads it."""
    from eolake_thesaurus.demo import load_demo_vocabularies

    reports = load_demo_vocabularies(state.storage, SHARED_DATA / "thesauri")
    if reports:
        log.info("demo vocabularies loaded", extra={"vocabularies": [r.vocabulary for r in reports]})
