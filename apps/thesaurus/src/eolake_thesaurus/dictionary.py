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

from eolake_thesaurus.store import DICTIONARY_URI, ImportReport, Parsed, RdfImportError, check_vocabulary_id, write

BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
TRANSLATION = "translation"
# what a sense line may carry besides translations: its number, a domain ("[cul]"), a note in parentheses
SENSE_NUMBER, DOMAIN, NOTE = re.compile(r"^\s*\d+\.\s*"), re.compile(r"\[[^\]]*\]"), re.compile(r"\([^)]*\)")
MAX_TRANSLATIONS = 4  # the first senses are the common ones; further ones are rare uses
HEADER = re.compile(r"^00-?database")  # dictd's own entries: 00-database-short (or 00databaseshort), …
LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def _number(text: str) -> int:
    value = 0
    for char in text:
        position = BASE64.find(char)
        if position < 0:
            raise ValueError(f"{text!r} is not a dictd base-64 number")
        value = value * 64 + position
    return value


def dictd_files(path: Path) -> tuple[Path, Path]:
    """The `.index` and `.dict.dz` of a dictd dictionary named by either file or by their common stem."""
    path = Path(path)
    name = path.name.removesuffix(".dict.dz").removesuffix(".index")
    return path.with_name(f"{name}.index"), path.with_name(f"{name}.dict.dz")


def read_dictd(path: Path) -> tuple[list[tuple[int, str, str]], str | None]:
    """The entries of a dictd dictionary as (index line number, headword, entry text), and its short title; a
    malformed file raises RdfImportError naming the file and, for the index, the line."""
    index, data_file = dictd_files(path)
    if not index.is_file() or not data_file.is_file():
        raise RdfImportError(f"{index}: a dictd dictionary needs {index.name} and {data_file.name}")
    try:
        data = gzip.decompress(data_file.read_bytes())
    except (OSError, EOFError, ValueError) as exc:
        raise RdfImportError(f"{data_file}: not a gzip/dictzip file: {exc}") from exc
    try:
        lines = index.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RdfImportError(f"{index}: not a UTF-8 text file: {exc}") from exc
    entries, title = [], None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            word, text = _entry(line, data)
        except ValueError as exc:
            raise RdfImportError(f"{index}:{number}: {exc}") from exc
        if HEADER.match(word):
            title = title or (_short_title(text) if word.replace("-", "") == "00databaseshort" else None)
        else:
            entries.append((number, word, text))
    if not entries:
        raise RdfImportError(f"{index}: no entry")
    return entries, title


def _entry(line: str, data: bytes) -> tuple[str, str]:
    fields = line.split("\t")
    if len(fields) < 3 or not fields[0].strip():
        raise ValueError("expected headword<TAB>offset<TAB>length")
    offset, length = _number(fields[1]), _number(fields[2])
    if offset + length > len(data):
        raise ValueError(f"entry at {offset}+{length} is past the end of the data ({len(data)} bytes)")
    try:
        return fields[0].strip(), data[offset : offset + length].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"entry is not UTF-8: {exc}") from exc


def _short_title(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines and not HEADER.match(lines[-1]) else None


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
    for language in (source, target):
        if not LANGUAGE.match(language):
            raise RdfImportError(f"{language!r} is not a language tag (such as fr, en, pt-BR)")
    entries, title = read_dictd(index)
    parsed = Parsed(title=title or f"{source}-{target} dictionary")
    for _, headline, text in entries:
        lines = [line for line in text.splitlines() if line.strip()]
        word = headword(lines[0]) if lines else headline
        found = [t for t in translations(lines[1:]) if t.casefold() != word.casefold()]
        if not word or not found:
            continue
        uri = f"{DICTIONARY_URI}{source}-{target}:{word}"
        parsed.concepts.add(uri)
        parsed.labels.add((uri, "pref", source, word))
        parsed.labels.update((uri, TRANSLATION, target, t) for t in found)
    if not parsed.concepts:
        raise RdfImportError(f"{dictd_files(index)[0]}: no entry with a translation")
    return parsed


def import_dictionary(
    db_path: Path, index: Path, source: str, target: str, vocabulary: str, title: str | None = None
) -> ImportReport:
    """Parse the whole dictionary first, then add it to `vocabulary` in one transaction (nothing half-written)."""
    check_vocabulary_id(vocabulary)
    return write(db_path, parse_dictd(index, source, target), vocabulary, title, dictd_files(index)[0].name)
