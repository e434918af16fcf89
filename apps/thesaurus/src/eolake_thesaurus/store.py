"""The thesaurus index: SKOS vocabularies parsed with rdflib once, at import, into one SQLite file.

The service only reads the file; `import_file` is the one writer. An import parses the whole file first (a
malformed file raises `RdfImportError` with the parser's position and writes nothing), then writes every row in
one transaction. Rows are keyed on their content (INSERT OR IGNORE), so importing the same file twice changes
nothing, and two files with the same concept URIs (GEMET English and French) merge into one bilingual vocabulary.
"""

from __future__ import annotations

import hashlib
import json
import pyexpat
import re
import sqlite3
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: it takes a while to load
    import rdflib

SKOS = "http://www.w3.org/2004/02/skos/core#"
MAX_FILE_BYTES = 256 * 1024 * 1024  # GEMET, the largest vocabulary loaded, is 3 MB per language
LABEL_KINDS = {"prefLabel": "pref", "altLabel": "alt", "hiddenLabel": "hidden"}
NOTE_KINDS = ("definition", "scopeNote")
# concepts of bilingual dictionaries (dictionary.py): words, not concepts to suggest while a user types
DICTIONARY_URI = "urn:eolake:dictionary:"
ATTRIBUTION = {
    "gemet": "GEMET, European Environment Agency (EEA): https://www.eionet.europa.eu/gemet",
    "inspire": "INSPIRE themes, European Commission: https://inspire.ec.europa.eu/theme",
    "eo": "eolake Earth-observation variables and products (after the GCOS Essential Climate Variables)",
    "freedict": "FreeDict French-English and English-French dictionaries (GPL): https://freedict.org",
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS vocabularies (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, attribution TEXT, scheme TEXT, sources TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS concepts (
    vocab TEXT NOT NULL, uri TEXT NOT NULL, top INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (vocab, uri));
CREATE TABLE IF NOT EXISTS labels (
    vocab TEXT NOT NULL, uri TEXT NOT NULL, kind TEXT NOT NULL, lang TEXT NOT NULL, text TEXT NOT NULL,
    norm TEXT NOT NULL, PRIMARY KEY (vocab, uri, kind, lang, text));
CREATE INDEX IF NOT EXISTS labels_norm ON labels (norm);
CREATE TABLE IF NOT EXISTS relations (
    vocab TEXT NOT NULL, uri TEXT NOT NULL, rel TEXT NOT NULL, target TEXT NOT NULL,
    PRIMARY KEY (vocab, uri, rel, target));
CREATE TABLE IF NOT EXISTS notes (
    vocab TEXT NOT NULL, uri TEXT NOT NULL, kind TEXT NOT NULL, lang TEXT NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (vocab, uri, kind, lang, text));
"""


def index_path(storage: Path) -> Path:
    """Where the index of a platform's storage lives (here, beside the store: the supervisor finds it without
    importing the service)."""
    return Path(storage) / "thesaurus" / "index.sqlite"


class RdfImportError(ValueError):
    """A file that cannot be imported; the message names the file and, for syntax errors, the position."""


def normalise(text: str) -> str:
    """Case- and accent-insensitive form used for matching: 'Inondation' and 'inondation' match, 'é' matches 'e'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def glob_pattern(query: str) -> str:
    """A user query with `*` wildcards as a GLOB over normalised labels (other GLOB characters are literal)."""
    escaped = re.sub(r"([\[\]?])", r"[\1]", normalise(query.replace("*", "\x00")))
    return escaped.replace("\x00", "*")


@dataclass
class Parsed:
    concepts: set[str] = field(default_factory=set)
    top: set[str] = field(default_factory=set)
    labels: set[tuple[str, str, str, str]] = field(default_factory=set)
    relations: set[tuple[str, str, str]] = field(default_factory=set)
    notes: set[tuple[str, str, str, str]] = field(default_factory=set)
    scheme: str | None = None
    title: str | None = None


class _Prolog(Exception):
    """The root element was reached: the document type declaration is behind."""


def _refuse_entity_declarations(path: Path) -> None:
    """XML entities declared in the document type can expand a 1 kB file into gigabytes ("billion laughs"):
    the prolog is read with expat, before the root element, and a declaration refuses the file."""
    parser = pyexpat.ParserCreate()

    def entity(name: str, *rest: object) -> None:
        raise RdfImportError(
            f"{path}: declares the XML entity {name!r}; entity declarations are not accepted "
            "(they can expand without bound)"
        )

    def root(*args: object) -> None:
        raise _Prolog

    parser.EntityDeclHandler = entity
    parser.StartElementHandler = root
    try:
        with open(path, "rb") as source:
            while chunk := source.read(64 * 1024):
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
    except (_Prolog, pyexpat.ExpatError):
        return  # the root element, or malformed XML: rdflib's parser reports the position


def parse(path: Path) -> Parsed:
    """Parse a SKOS file (RDF/XML or Turtle, by suffix; other suffixes are tried as RDF/XML)."""
    path = Path(path)
    out = _skos_content(_read_graph(path))
    if not out.concepts:
        raise RdfImportError(f"{path}: no skos:Concept found")
    return out


def _read_graph(path: Path) -> rdflib.Graph:
    import rdflib

    if not path.is_file():
        raise RdfImportError(f"{path}: no such file")
    fmt = {".ttl": "turtle", ".n3": "n3", ".nt": "nt", ".jsonld": "json-ld"}.get(path.suffix.lower(), "xml")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise RdfImportError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB")
    if fmt == "xml":
        _refuse_entity_declarations(path)
    graph = rdflib.Graph()
    try:
        graph.parse(str(path), format=fmt)
    except Exception as exc:  # rdflib raises SAXParseException, BadSyntax, …: all carry the position in str()
        position = ""
        line, column = getattr(exc, "getLineNumber", None), getattr(exc, "getColumnNumber", None)
        if line and column:
            position = f"line {line()}, column {column()}: "
        raise RdfImportError(f"{path}: not valid {fmt}: {position}{exc}") from exc
    return graph


def _skos_content(graph: rdflib.Graph) -> Parsed:
    """The concepts of the graph, its scheme (the last one named), labels, notes and relations both ways."""
    import rdflib
    from rdflib.namespace import DC, DCTERMS, RDF

    skos = rdflib.Namespace(SKOS)
    out = Parsed()
    out.concepts.update(str(concept) for concept in graph.subjects(RDF.type, skos.Concept))
    for scheme in graph.subjects(RDF.type, skos.ConceptScheme):
        out.scheme = str(scheme)
        title = graph.value(scheme, DCTERMS.title) or graph.value(scheme, DC.title)
        out.title = str(title) if title else None
        out.top.update(str(o) for o in graph.objects(scheme, skos.hasTopConcept))
    out.top.update(str(s) for s in graph.subjects(skos.topConceptOf, None))
    for name, kind in LABEL_KINDS.items():
        out.labels.update(
            (str(s), kind, getattr(o, "language", None) or "", str(o).strip())
            for s, o in graph.subject_objects(skos[name])
            if str(s) in out.concepts and str(o).strip()
        )
    for name in NOTE_KINDS:
        out.notes.update(
            (str(s), name, getattr(o, "language", None) or "", str(o).strip())
            for s, o in graph.subject_objects(skos[name])
            if str(s) in out.concepts
        )
    inverse = {"broader": "narrower", "narrower": "broader", "related": "related"}
    for rel, inv in inverse.items():
        for s, o in graph.subject_objects(skos[rel]):
            out.relations.add((str(s), rel, str(o)))
            out.relations.add((str(o), inv, str(s)))
    return out


@dataclass
class ImportReport:
    vocabulary: str
    concepts: int
    labels: int
    relations: int
    added: dict[str, int]
    content_hash: str


def connect(db_path: Path, readonly: bool = False) -> sqlite3.Connection:
    db_path = Path(db_path)
    if readonly:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
    else:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(db_path, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
    conn.row_factory = sqlite3.Row
    return conn


def seal(db_path: Path) -> None:
    """Leave the index as one self-contained file for readers on a read-only mount (the Kubernetes pod's): a
    WAL-mode database cannot be opened there, since every reader needs its -shm file beside it. The next writer
    turns WAL back on (`connect`)."""
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")  # checkpoints the WAL and removes the -wal and -shm files
    finally:
        conn.close()


def import_file(db_path: Path, path: Path, vocabulary: str | None = None, title: str | None = None) -> ImportReport:
    """Parse `path` fully, then add it to `vocabulary` (default: the file's stem) in one transaction."""
    path = Path(path)
    vocabulary = check_vocabulary_id(vocabulary or re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-"))
    return write(db_path, parse(path), vocabulary, title, path.name)  # parsed before anything is written


def check_vocabulary_id(vocabulary: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", vocabulary):
        raise RdfImportError(f"vocabulary id {vocabulary!r} must be lowercase letters, digits, - or _")
    return vocabulary


def write(db_path: Path, parsed: Parsed, vocabulary: str, title: str | None, source: str) -> ImportReport:
    """Add a parsed vocabulary (from the file named `source`) to the index in one transaction."""
    conn = connect(db_path)
    try:
        before = _counts(conn, vocabulary)
        with conn:  # one transaction: all rows or none
            row = conn.execute("SELECT sources FROM vocabularies WHERE id = ?", (vocabulary,)).fetchone()
            sources = sorted(set(json.loads(row["sources"]) if row else []) | {source})
            conn.execute(
                "INSERT INTO vocabularies (id, title, attribution, scheme, sources) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET title = COALESCE(?, vocabularies.title), sources = excluded.sources,"
                " scheme = COALESCE(vocabularies.scheme, excluded.scheme)",
                (
                    vocabulary,
                    title or parsed.title or vocabulary,
                    ATTRIBUTION.get(vocabulary),
                    parsed.scheme,
                    json.dumps(sources),
                    title,
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO concepts (vocab, uri) VALUES (?, ?)", [(vocabulary, c) for c in parsed.concepts]
            )
            conn.executemany(
                "UPDATE concepts SET top = 1 WHERE vocab = ? AND uri = ?", [(vocabulary, c) for c in parsed.top]
            )
            conn.executemany(
                "INSERT OR IGNORE INTO labels VALUES (?, ?, ?, ?, ?, ?)",
                [(vocabulary, u, k, lang, t, normalise(t)) for u, k, lang, t in parsed.labels],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO relations VALUES (?, ?, ?, ?)",
                [(vocabulary, u, r, t) for u, r, t in parsed.relations],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO notes VALUES (?, ?, ?, ?, ?)",
                [(vocabulary, u, k, lang, t) for u, k, lang, t in parsed.notes],
            )
        after = _counts(conn, vocabulary)
        return ImportReport(
            vocabulary,
            after["concepts"],
            after["labels"],
            after["relations"],
            {k: after[k] - before[k] for k in after},
            content_hash(conn, vocabulary),
        )
    finally:
        conn.close()


def _counts(conn: sqlite3.Connection, vocab: str) -> dict[str, int]:
    return {
        t: conn.execute(f"SELECT count(*) FROM {t} WHERE vocab = ?", (vocab,)).fetchone()[0]  # noqa: S608
        for t in ("concepts", "labels", "relations", "notes")
    }


def content_hash(conn: sqlite3.Connection, vocab: str) -> str:
    digest = hashlib.sha256()
    for table in ("concepts", "labels", "relations", "notes"):
        rows = conn.execute(f"SELECT * FROM {table} WHERE vocab = ?", (vocab,)).fetchall()  # noqa: S608
        for row in sorted(tuple(r) for r in rows):
            digest.update(json.dumps(row).encode())
    return digest.hexdigest()


def is_empty(db_path: Path) -> bool:
    if not Path(db_path).exists():
        return True
    conn = connect(db_path)
    try:
        count: int = conn.execute("SELECT count(*) FROM vocabularies").fetchone()[0]
        return count == 0
    finally:
        conn.close()
