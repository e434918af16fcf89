"""Bilingual dictionaries as a vocabulary: each headword a concept, its translations labels in the other language.

GEMET names a few thousand environmental concepts; the words users put around them ("hauteur des vagues", "indice
de végétation", "éclairs") are often in no thesaurus. A translating dictionary fills that gap. FreeDict's
French-English and English-French dictionaries (GPL, Debian packages `dict-freedict-fra-eng` and
`dict-freedict-eng-fra`) come in the dictd format: an index of `headword<TAB>offset<TAB>length` (base 64) into a
gzip-compressed text of entries, each its headword line then numbered senses of comma-separated translations.

A headword is the concept's preferred label in the source language; its translations are stored with the label
kind `translation`: expansion returns them, but a query never matches them, so that a French word does not reach
the other French words an English translation also translates ("cover" is not looked up in French-English).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from eolake_thesaurus.store import DICTIONARY_URI, ImportReport, Parsed, RdfImportError, write

BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
TRANSLATION = "translation"
# what a sense line may carry besides translations: its number, a domain ("[cul]"), a note in parentheses
SENSE_NUMBER, DOMAIN, NOTE = re.compile(r"^\s*\d+\.\s*"), re.compile(r"\[[^\]]*\]"), re.compile(r"\([^)]*\)")
MAX_TRANSLATIONS = 4  # the first senses are the common ones; further ones are rare uses


def _number(text: str) -> int:
    value = 0
    for char in text:
        value = value * 64 + BASE64.index(char)
    return value


def headword(line: str) -> str:
    """'foudre /fudʀ/ <n, fem>' -> 'foudre'."""
    return re.split(r"\s+[/<]", line.strip(), maxsplit=1)[0].strip()


def translations(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        text = NOTE.sub(" ", DOMAIN.sub(" ", SENSE_NUMBER.sub("", line)))
        out += [t for t in (" ".join(part.split()) for part in re.split(r"[,;]", text)) if t and t not in out]
    return out[:MAX_TRANSLATIONS]


def parse_dictd(index: Path, source: str, target: str) -> Parsed:
    """A dictd dictionary (`<name>.index` beside `<name>.dict.dz`) from language `source` to `target`."""
    index, data_file = Path(index), Path(index).with_suffix(".dict.dz")
    if not index.is_file() or not data_file.is_file():
        raise RdfImportError(f"{index}: a dictd dictionary needs {index.name} and {data_file.name}")
    try:
        data = gzip.decompress(data_file.read_bytes())
        entries = [line.split("\t") for line in index.read_text(encoding="utf-8").splitlines()]
        texts = [data[_number(e[1]):_number(e[1]) + _number(e[2])].decode("utf-8") for e in entries
                 if len(e) >= 3 and not e[0].startswith("00-database")]
    except (OSError, ValueError, UnicodeDecodeError, EOFError) as exc:
        raise RdfImportError(f"{index}: not a dictd dictionary: {exc}") from exc
    parsed = Parsed(title=f"FreeDict {source}-{target}")
    for text in texts:
        lines = [line for line in text.splitlines() if line.strip()]
        word = headword(lines[0]) if lines else ""
        found = [t for t in translations(lines[1:]) if t.casefold() != word.casefold()]
        if not word or not found:
            continue
        uri = f"{DICTIONARY_URI}{source}-{target}:{word}"
        parsed.concepts.add(uri)
        parsed.labels.add((uri, "pref", source, word))
        parsed.labels.update((uri, TRANSLATION, target, t) for t in found)
    if not parsed.concepts:
        raise RdfImportError(f"{index}: no entry with a translation")
    return parsed


def import_dictionary(db_path: Path, index: Path, source: str, target: str, vocabulary: str,
                      title: str) -> ImportReport:
    return write(db_path, parse_dictd(index, source, target), vocabulary, title, Path(index).name)
