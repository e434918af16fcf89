"""Relevance-ranked free text over the harmonised dataset catalog: an in-memory SQLite FTS5 index.

Why SQLite FTS5 in the process rather than a table in the platform database: the catalog is a few hundred
records rebuilt from files and provider answers (nothing to persist, nothing to migrate), every replica holds the
same copy, and a query costs well under a millisecond with no network hop or connection from the pool. FTS5 does
the matching and BM25 ranking with per-column weights; Snowball stemmers (snowballstemmer) supply the languages.

Each field is indexed twice: its words folded (lower case, accents removed) and their stems in the record's
language. A query word matches a field by its folded form, its English or its French stem (so "océans" meets
"ocean" and "salinité" meets "salinity"), and the last word of a query also by prefix. Thesaurus terms come as
phrases, scored in their own FTS5 queries at a lower weight; `rank` fuses those ranked lists.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import snowballstemmer

FIELDS = ("title", "keywords", "platform", "description")
# BM25 weights: title and keywords (A), platform/instrument (B), description (C); stems as their folded words.
WEIGHTS = {"title": 10.0, "keywords": 8.0, "platform": 5.0, "description": 1.5}
STEMMER_NAMES = {"en": "english", "fr": "french"}
# A Snowball stemmer holds the word it works on: one per thread (the index is rebuilt in a thread while queries stem
# on the event loop; shared, they garbled each other's words and raised IndexError)
_stemmers = threading.local()
STOPWORDS = set(
    """
a an and are as at be by for from in into is it of on or over the to with without data dataset datasets product
products au aux avec ce ces d dans de des du en et l la le les leur par pour sur un une ou donnees donnee produit
produits jeu jeux
""".split()
)
WORD = re.compile(r"\w+")
DIGITS = re.compile(r"\d+|[^\W\d]+")
PHRASE = re.compile(r'"([^"]*)"')
# A word matched only through its translations or synonyms earns this share of the credit of the word itself, and
# half its relevance; narrower concepts add relevance only.
EXPANDED_CREDIT, EXPANDED_RELEVANCE, NARROWER_WEIGHT = 0.6, 0.5, 0.25
# related concepts (skos:related: soil moisture for drought) weigh less than narrower ones
RELATED_WEIGHT = 0.15
MAX_COMPOUND = 200  # FTS5 expressions in one statement (SQLite allows 500 SELECTs in a compound one)
COGNATE_MIN = 5
# French endings and the English ones of the same learned words (folded): "humidité" -> "humidity", "urbaines" ->
# "urban", "numérique" -> "numeric(al)", "topographie" -> "topography", "altimètre" -> "altimeter", "annuel" ->
# "annual", "primaire" -> "primary", "territoire" -> "territory", "poreux" -> "porous". Longest ending first.
COGNATE_ENDINGS = [
    (("metres", "metre"), ("meter",)),
    (("iques", "ique"), ("ic", "ical")),
    (("ites", "ite"), ("ity",)),
    (("aines", "aine", "ains", "ain"), ("an",)),
    (("elles", "elle", "els", "el"), ("al",)),
    (("aires", "aire"), ("ary",)),
    (("oires", "oire"), ("ory",)),
    (("euses", "euse", "eux"), ("ous",)),
    (("ies", "ie"), ("y",)),
    (("ifs", "if", "ives", "ive"), ("ive",)),
]
COGNATE_ROOT_MIN = 3
DESCRIPTION_SHARE = 0.4


def fold(text: str) -> str:
    """Lower case without accents: 'Salinité' -> 'salinite'."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# A processing level ("Level-2", "level 1C", "niveau 2A", "L2A") is one token, "l2" or "l2a", so that the plain word
# "level" ("water level", "sea level") does not meet every processing-level title; a sub-level ("l2a") is also
# indexed as its level ("l2"), and neither is split into "l" and "2" (which would meet the 2 of "Sentinel-2")
PROCESSING_LEVEL = re.compile(r"\b(?:level|niveau)[\s_-]?([0-4])([a-z]{0,2})\b", re.IGNORECASE)
LEVEL_TOKEN = re.compile(r"l[0-4][a-z]{0,2}")


def words(text: str) -> list[str]:
    return WORD.findall(PROCESSING_LEVEL.sub(r"l\1\2", text.lower().replace("_", " ")))


def indexed_words(text: str) -> list[str]:
    """Words as indexed: a word joining letters and digits is followed by its parts, so that "SENTINEL2" is
    found by "Sentinel-2" and "sentinel 2" as well as by "sentinel2"; a processing level by its level."""
    out = []
    for word in words(text):
        out.append(word)
        if LEVEL_TOKEN.fullmatch(word):
            out += [word[:2]] if len(word) > 2 else []
            continue
        parts = DIGITS.findall(word)
        if len(parts) > 1:
            out += parts
    return out


@lru_cache(maxsize=65536)
def stem(word: str, lang: str) -> str:
    return fold(_stemmer(lang if lang in STEMMER_NAMES else "en").stemWord(word))


def _stemmer(lang: str) -> Any:
    mine = _stemmers.__dict__
    if lang not in mine:
        mine[lang] = snowballstemmer.stemmer(STEMMER_NAMES[lang])
    return mine[lang]


def _quote(token: str) -> str:
    return '"' + token.replace('"', "") + '"'


@dataclass
class Query:
    """What a free-text query asks: single words (each one must match, ideally), quoted phrases, and the
    thesaurus's terms, each a phrase: `alternatives` per word (labels of the concepts that word names),
    `equivalents` of the whole query (labels of a concept named by all of it), `narrower` and `related` concepts."""

    words: list[str] = field(default_factory=list)
    phrases: list[list[str]] = field(default_factory=list)
    prefix: str | None = None
    alternatives: dict[str, list[str]] = field(default_factory=dict)
    equivalents: list[str] = field(default_factory=list)
    parts: list[tuple[list[str], list[str]]] = field(default_factory=list)  # (query words, labels standing for them)
    narrower: list[str] = field(default_factory=list)
    related: list[list[str]] = field(default_factory=list)  # per related concept, its labels

    @classmethod
    def parse(cls, text: str) -> Query:
        phrases = [w for w in (words(p) for p in PHRASE.findall(text)) if w]
        rest = PHRASE.sub(" ", text)
        found = [w for w in words(rest) if fold(w) not in STOPWORDS]
        ends_in_word = bool(rest.rstrip() == rest and found and rest.lower().endswith(found[-1]))
        prefix = fold(found[-1]) if ends_in_word and len(found[-1]) >= 3 else None
        return cls(words=list(dict.fromkeys(found)), phrases=phrases, prefix=prefix)

    @property
    def empty(self) -> bool:
        return not (self.words or self.phrases)

    def proximity(self, fields: tuple[str, ...] = FIELDS) -> str | None:
        """The query's words within a few words of each other (folded, or as English stems)."""
        if len(self.words) < 2:
            return None
        raw = " ".join(_quote(fold(w)) for w in self.words)
        stems = " ".join(_quote(stem(w, "en")) for w in self.words)
        span = 2 * len(self.words)
        return f"{_columns(fields, False)} : NEAR({raw}, {span}) OR {_columns(fields, True)} : NEAR({stems}, {span})"

    def groups(self, fields: tuple[str, ...] = FIELDS) -> list[tuple[str, str | None]]:
        """Per word or phrase of the user's own text: its FTS5 expression and that of its alternatives (the
        thesaurus's labels; for a last word being typed, the words it starts)."""
        out = []
        for word in self.words:
            alternatives = [_phrase_match(t, fields) for t in (words(a) for a in self.alternatives.get(word, [])) if t]
            if fold(word) == self.prefix:
                alternatives.append(f"{_columns(fields, False)} : {_quote(fold(word))} *")
            out.append((_word_match(word, fields), " OR ".join(alternatives[:60]) or None))
        return out + [(_phrase_match(p, fields), None) for p in self.phrases]


def _columns(fields: tuple[str, ...], stemmed: bool) -> str:
    return "{" + " ".join(f + "_s" if stemmed else f for f in fields) + "}"


def _word_match(word: str, fields: tuple[str, ...]) -> str:
    raw = fold(word)
    stems = dict.fromkeys([stem(word, "en"), stem(word, "fr")])
    parts = [f"{_columns(fields, False)} : {_quote(raw)}"]
    parts += [f"{_columns(fields, True)} : {_quote(s)}" for s in stems if s]
    return "(" + " OR ".join(parts + _cognates(word, fields)) + ")"


def _cognates(word: str, fields: tuple[str, ...]) -> list[str]:
    """The word's stems as prefixes of indexed words: French and English share most of their learned vocabulary
    ("réanalyse" meets "reanalysis", "précipitations" "precipitation", "hydrologie" "hydrology"). Short stems
    would reach unrelated words ("sol" would meet "solar"): only those of COGNATE_MIN letters or more. Where the
    languages spell the ending differently, the English form's stem ("urbaines" -> "urban")."""
    stems = dict.fromkeys(s for s in (stem(word, "fr"), stem(word, "en")) if len(s) >= COGNATE_MIN)
    english = dict.fromkeys(stem(w, "en") for w in english_cognates(word))
    return [f"{_columns(fields, False)} : {_quote(s)} *" for s in stems] + [
        f"{_columns(fields, True)} : {_quote(s)}" for s in english if s not in stems
    ]


def english_cognates(word: str) -> list[str]:
    """The English spellings a French word's learned ending suggests (COGNATE_ENDINGS); none for a word without
    such an ending. An English word with one gets a form that is seldom a word ("pixel" -> "pixal"): it matches
    nothing."""
    folded = fold(word)
    out = []
    for endings, replacements in COGNATE_ENDINGS:
        ending = next((e for e in endings if folded.endswith(e) and len(folded) - len(e) >= COGNATE_ROOT_MIN), None)
        if ending:
            out += [folded[: -len(ending)] + r for r in replacements]
            break
    return out


def _phrase_match(tokens: list[str], fields: tuple[str, ...], lang: str = "en") -> str:
    raw = " ".join(fold(t) for t in tokens)
    stems = " ".join(stem(t, lang) for t in tokens)
    return f"({_columns(fields, False)} : {_quote(raw)} OR {_columns(fields, True)} : {_quote(stems)})"


class Index:
    """Records (harmonised STAC collections) by id, searchable by free text."""

    def __init__(self, records: Iterable[dict[str, Any]]):
        self.records: list[dict[str, Any]] = []
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        columns = ", ".join([*FIELDS, *(f + "_s" for f in FIELDS)])
        self.db.execute(f"CREATE VIRTUAL TABLE docs USING fts5({columns}, tokenize='unicode61')")
        for record in records:
            self.add(record)
        self.weights = ", ".join(str(WEIGHTS[f]) for f in FIELDS * 2)
        # the same without the description: 0 for a record that matched there only
        self.naming_weights = ", ".join(str(0.0 if f == "description" else WEIGHTS[f]) for f in FIELDS * 2)

    def add(self, record: dict[str, Any]) -> None:
        lang = record.get("language") or "en"
        texts = _field_texts(record)
        row = [" ".join(fold(w) for w in indexed_words(texts[f])) for f in FIELDS]
        row += [" ".join(stem(w, lang) for w in indexed_words(texts[f])) for f in FIELDS]
        self.db.execute(
            f"INSERT INTO docs(rowid, {', '.join([*FIELDS, *(f + '_s' for f in FIELDS)])}) "
            f"VALUES (?, {', '.join('?' * len(row))})",
            [len(self.records), *row],
        )
        self.records.append(record)

    def _scores(self, expressions: list[str]) -> list[dict[int, tuple[float, bool]]]:
        """Per FTS5 expression: rowid -> (BM25 relevance (higher is better), whether it matched outside the
        description); all of them in one statement (a compound SELECT), or one by one when one cannot be parsed."""
        select = (
            f"SELECT ?, rowid, -bm25(docs, {self.weights}), bm25(docs, {self.naming_weights}) < 0 FROM docs "
            "WHERE docs MATCH ?"
        )
        out: list[dict[int, tuple[float, bool]]] = [{} for _ in expressions]
        try:
            rows = self.db.execute(
                " UNION ALL ".join([select] * len(expressions)),
                [v for i, e in enumerate(expressions) for v in (i, e)],
            )
            for i, rowid, score, named in rows:
                out[i][rowid] = (score, bool(named))
        except sqlite3.OperationalError:  # one FTS5 cannot parse: each alone, that one matching nothing (never a 500)
            if len(expressions) == 1:
                return [{}]
            return [self._scores([e])[0] for e in expressions]
        return out

    def _normalised(self, expressions: Iterable[str | None]) -> dict[str | None, dict[int, tuple[float, bool]]]:
        """expression -> rowid -> (relevance in (0, 1], 1 for the best record; whether it matched outside the
        description), for all the expressions in as few statements as SQLite allows (MAX_COMPOUND at once)."""
        unique = list(dict.fromkeys(e for e in expressions if e))
        out: dict[str | None, dict[int, tuple[float, bool]]] = {}
        for start in range(0, len(unique), MAX_COMPOUND):
            chunk = unique[start : start + MAX_COMPOUND]
            for expression, found in zip(chunk, self._scores(chunk), strict=True):
                top = max((score for score, _ in found.values()), default=1.0) or 1.0
                out[expression] = {rowid: (score / top, named) for rowid, (score, named) in found.items()}
        return out

    def rank(self, query: Query, fields: tuple[str, ...] = FIELDS) -> list[tuple[dict[str, Any], float]]:
        """Records matching the query in these fields, best first. Each word (or phrase) of the query gives a
        record credit 1 when the record has it, EXPANDED_CREDIT when it has only one of its alternatives; a label
        of a concept named by the whole query gives every word that credit. Score: twice the mean credit plus the
        mean of the per-word BM25 relevance (normalised by the best; alternatives at half), plus narrower terms' at
        a low weight and the best of the related concepts' at a lower one. A word found only in a description (long
        texts that mention much in passing) earns DESCRIPTION_SHARE of that credit. FTS5 matches and scores, every
        expression of a query in one statement; this only fuses its ranked lists."""
        groups = query.groups(fields)
        parts = [(covered, self._phrases(labels, fields)) for covered, labels in query.parts]
        equivalents, narrower = self._phrases(query.equivalents, fields), self._phrases(query.narrower, fields)
        related = [self._phrases(labels, fields) for labels in query.related]
        proximity = query.proximity(fields)
        found = self._normalised(
            [
                *(e for group in groups for e in group),
                proximity,
                *(p for _, p in parts),
                equivalents,
                narrower,
                *related,
            ]
        )
        credit: dict[int, list[float]] = {}
        relevance: dict[int, float] = {}
        for i, (exact, alternatives) in enumerate(groups):
            for expression, full, weight in ((exact, 1.0, 1.0), (alternatives, EXPANDED_CREDIT, EXPANDED_RELEVANCE)):
                for rowid, (score, named) in found.get(expression, {}).items():
                    cells = credit.setdefault(rowid, [0.0] * len(groups))
                    share = full if named else full * DESCRIPTION_SHARE
                    if share > cells[i]:
                        relevance[rowid] = relevance.get(rowid, 0.0) + weight * score / len(groups)
                        cells[i] = share
        for rowid, (score, _) in found.get(proximity, {}).items():  # the words close together
            relevance[rowid] = relevance.get(rowid, 0.0) + score
        for covered, expression in parts:  # a part's concept stands for each of its words
            slots = [i for i, word in enumerate(query.words) if word in covered]
            for rowid, (score, named) in found.get(expression, {}).items():
                cells = credit.setdefault(rowid, [0.0] * len(groups))
                share = EXPANDED_CREDIT if named else EXPANDED_CREDIT * DESCRIPTION_SHARE
                for i in slots:
                    cells[i] = max(cells[i], share)
                relevance[rowid] = relevance.get(rowid, 0.0) + EXPANDED_RELEVANCE * score
        for rowid, (score, _) in found.get(equivalents, {}).items():
            cells = credit.setdefault(rowid, [0.0] * max(len(groups), 1))
            credit[rowid] = [max(c, EXPANDED_CREDIT) for c in cells]
            relevance[rowid] = relevance.get(rowid, 0.0) + EXPANDED_RELEVANCE * score
        scores = {rowid: 2 * sum(cells) / len(cells) + relevance.get(rowid, 0.0) for rowid, cells in credit.items()}
        for rowid, score in _loosely_related(found, narrower, related).items():
            scores[rowid] = scores.get(rowid, 0.0) + score
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], self.records[kv[0]]["id"]))
        return [(self.records[rowid], round(score, 4)) for rowid, score in ranked]

    @staticmethod
    def _phrases(terms: list[str], fields: tuple[str, ...]) -> str | None:
        phrases = [t for t in (words(term) for term in terms) if t]
        return " OR ".join(_phrase_match(p, fields) for p in phrases[:60]) or None

    def titles_starting(self, text: str, limit: int) -> list[dict[str, Any]]:
        """Datasets whose title has words starting with the user's words (autocomplete)."""
        tokens = [fold(w) for w in words(text)]
        if not tokens:
            return []
        expression = " AND ".join(f"title : {_quote(t)} *" for t in tokens)
        found = self._scores([expression])[0]
        ranked = sorted(found, key=lambda rowid: (-found[rowid][0], self.records[rowid]["id"]))
        return [self.records[rowid] for rowid in ranked[:limit]]


def _loosely_related(
    found: dict[str | None, dict[int, tuple[float, bool]]], narrower: str | None, related: list[str | None]
) -> dict[int, float]:
    """rowid -> what the narrower concepts' terms (NARROWER_WEIGHT) and the related concepts' add: of the related
    ones, the concept the record is most about (RELATED_WEIGHT), not their sum (a record naming many of them in
    passing is not more about the need than one about one of them)."""
    out = {rowid: NARROWER_WEIGHT * score for rowid, (score, _) in found.get(narrower, {}).items()}
    best: dict[int, float] = {}
    for expression in related:
        for rowid, (score, _) in found.get(expression, {}).items():
            best[rowid] = max(best.get(rowid, 0.0), score)
    for rowid, score in best.items():
        out[rowid] = out.get(rowid, 0.0) + RELATED_WEIGHT * score
    return out


def _field_texts(record: dict[str, Any]) -> dict[str, str]:
    summaries = record.get("summaries") or {}
    platform = [
        record["id"],
        *summaries.get("platform", []),
        *summaries.get("constellation", []),
        *summaries.get("instruments", []),
        *summaries.get("processing:level", []),
    ]
    return {
        "title": str(record.get("title") or ""),
        "keywords": " ".join(str(k) for k in record.get("keywords") or []),
        "platform": " ".join(str(p) for p in platform),
        "description": str(record.get("description") or ""),
    }
