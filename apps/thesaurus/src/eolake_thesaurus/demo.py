"""`eolake thesaurus import` and the demo vocabularies the embedded platform loads on first start."""

from __future__ import annotations

from pathlib import Path

from eolake_thesaurus.dictionary import import_dictionary
from eolake_thesaurus.store import ImportReport, import_file, index_path, is_empty

DEMO = [
    ("gemet-en.rdf", "gemet", "GEMET - GEneral Multilingual Environmental Thesaurus"),
    ("gemet-fr.rdf", "gemet", "GEMET - GEneral Multilingual Environmental Thesaurus"),
    ("inspire-theme.rdf", "inspire", "INSPIRE themes"),
]
# Shipped with the package: the Earth-observation variables and products in English and French (GCOS ECVs, hazards,
# product types), which link the words of EO datasets' metadata that GEMET does not ("land cover", "indice")
PACKAGED = Path(__file__).parent / "vocabularies"
EO_VOCABULARY = (PACKAGED / "eo-variables.ttl", "eo", "Earth-observation variables and products")
# Translating dictionaries where the system has them (Debian: dict-freedict-fra-eng, dict-freedict-eng-fra)
DICTD = Path("/usr/share/dictd")
DICTIONARIES = [("freedict-fra-eng.index", "fr", "en"), ("freedict-eng-fra.index", "en", "fr")]
DICTIONARY_TITLE = "FreeDict French-English and English-French dictionaries"


def import_vocabulary(
    storage: Path, file: Path, vocabulary: str | None = None, title: str | None = None
) -> ImportReport:
    return import_file(index_path(storage), file, vocabulary, title)


def packaged_additions(storage: Path) -> list[ImportReport]:
    """The packaged EO vocabulary imported again: rows are keyed on their content, so only what a newer version of
    the file added (concepts, labels, links) is written; what it no longer has stays until the index is rebuilt."""
    report = import_vocabulary(storage, *EO_VOCABULARY)
    return [report] if any(report.added.values()) else []


def load_demo_vocabularies(storage: Path, thesauri: Path, dictionaries: Path = DICTD) -> list[ImportReport]:
    """GEMET (English + French: one bilingual vocabulary), the INSPIRE themes, the packaged EO vocabulary and the
    French-English dictionaries found, when the index is empty. An index already filled gets what the packaged
    vocabulary of this version adds (its report, when it added anything)."""
    if not is_empty(index_path(storage)):
        return packaged_additions(storage)
    reports = [
        import_vocabulary(storage, thesauri / name, vocab, title)
        for name, vocab, title in DEMO
        if (thesauri / name).exists()
    ]
    reports.append(import_vocabulary(storage, *EO_VOCABULARY))
    return reports + [
        import_dictionary(index_path(storage), dictionaries / name, source, target, "freedict", DICTIONARY_TITLE)
        for name, source, target in DICTIONARIES
        if (dictionaries / name).exists()
    ]
