"""`eolake thesaurus import` and the demo vocabularies the embedded platform loads on first start."""

from __future__ import annotations

from pathlib import Path

from eolake_thesaurus.settings import index_path
from eolake_thesaurus.store import ImportReport, import_file, is_empty

DEMO = [("gemet-en.rdf", "gemet", "GEMET - GEneral Multilingual Environmental Thesaurus"),
        ("gemet-fr.rdf", "gemet", "GEMET - GEneral Multilingual Environmental Thesaurus"),
        ("inspire-theme.rdf", "inspire", "INSPIRE themes")]


def import_vocabulary(storage: Path, file: Path, vocabulary: str | None = None,
                      title: str | None = None) -> ImportReport:
    return import_file(index_path(storage), file, vocabulary, title)


def load_demo_vocabularies(storage: Path, thesauri: Path) -> list[ImportReport]:
    """GEMET (English + French: one bilingual vocabulary) and the INSPIRE themes, when the index is empty."""
    if not is_empty(index_path(storage)):
        return []
    return [import_vocabulary(storage, thesauri / name, vocab, title)
            for name, vocab, title in DEMO if (thesauri / name).exists()]
