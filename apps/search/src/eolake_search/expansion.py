"""Thesaurus expansion of free text: the concepts a query names, their labels in every language, narrower ones.

The thesaurus service answers; when it cannot, the search goes on unexpanded and says so.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from cachetools import TTLCache

from eolake_search.engine import STOPWORDS, Query, fold, words

log = logging.getLogger(__name__)


@dataclass
class Expansion:
    applied: bool
    alternatives: dict[str, list[str]] = field(default_factory=dict)  # per query word: labels of its concepts
    equivalents: list[str] = field(default_factory=list)  # labels of a concept the whole query names
    parts: dict[str, list[str]] = field(default_factory=dict)  # per part of the query: labels of a concept it names
    covers: dict[str, list[str]] = field(default_factory=dict)  # per part: the query words in it
    narrower: list[str] = field(default_factory=list)  # labels of their narrower concepts
    related: dict[str, list[str]] = field(default_factory=dict)  # per concept skos:related to them: its labels
    concepts: list[dict[str, Any]] = field(default_factory=list)
    notice: str | None = None

    @property
    def terms(self) -> list[str]:
        return list(
            dict.fromkeys(
                [
                    *self.equivalents,
                    *(t for ts in self.parts.values() for t in ts),
                    *(t for ts in self.alternatives.values() for t in ts),
                    *self.narrower,
                    *(t for ts in self.related.values() for t in ts),
                ]
            )
        )

    def apply(self, query: Query, narrower: bool = True) -> Query:
        query.alternatives, query.equivalents = self.alternatives, self.equivalents
        query.parts = [(self.covers[part], labels) for part, labels in self.parts.items() if labels]
        query.narrower = self.narrower if narrower else []
        query.related = [labels for labels in self.related.values() if labels] if narrower else []
        return query

    def report(self, depth: int) -> dict[str, Any]:
        """What the answer says about it: the concepts found, the terms searched, and why each was added."""
        if not self.applied:
            return {"applied": False, **({"error": self.notice} if self.notice else {})}
        return {
            "applied": True,
            "depth": depth,
            "terms": self.terms,
            "concepts": self.concepts,
            "why": {
                "alternatives": "labels, in every loaded language, of the concepts a query word names "
                "(a record matching the word itself ranks above)",
                "equivalents": "labels of a concept the whole query names",
                "parts": "labels of a concept a part of the query names, standing for that part's words",
                "narrower": "labels of narrower concepts (a lower weight still)",
                "related": "labels of concepts related to those named (skos:related; the lowest weight)",
            },
        }


def unexpanded(reason: str) -> Expansion:
    return Expansion(applied=False, notice=reason)


def singular(word: str) -> str | None:
    """The word without a plural s (French and English) or the x of French plurals in -ux, for looking labels up:
    "rivières" -> "rivière", "feux" -> "feu", "niveaux" -> "niveau" (not "virus", "glass")."""
    plural = len(word) > 3 and (word[-1] == "s" and word[-2] not in "su" or word[-1] == "x" and word[-2] == "u")
    return word[:-1] if plural else None


# French adjectives as the dictionaries and thesauri write them (masculine singular: "urbaines" -> "urbain",
# "côtières" -> "côtier") and the nouns they derive from ("neigeuse" -> "neige", "nuageux" -> "nuage",
# "météorologique" -> "météorologie", "climatique" -> "climat")
DERIVED = [
    (("aines",), ("ain",)),
    (("aine",), ("ain",)),
    (("elles", "elle"), ("el",)),
    (("ives", "ive"), ("if",)),
    (("ales", "ale", "aux"), ("al",)),
    (("ières", "ière"), ("ier",)),
    (("euses", "euse"), ("eux", "e")),
    (("eux",), ("e",)),
    (("iques", "ique"), ("ie", "")),
]


def lookup_forms(word: str) -> list[str]:
    """The forms of a query word looked up in the thesaurus: itself, its singular, the nouns it derives from."""
    forms = [word, *filter(None, [singular(word)])]
    for endings, replacements in DERIVED:
        ending = next((e for e in endings if word.endswith(e) and len(word) - len(e) >= 3), None)
        if ending:
            forms += [word[: -len(ending)] + r for r in replacements]
    return list(dict.fromkeys(forms))


async def expand(
    client: httpx.AsyncClient,
    thesaurus: str,
    text: str,
    lang: str | None,
    depth: int,
    timeout: float,
    max_terms: int,
    languages: list[str] | None = None,
    related: bool = True,
) -> Expansion:
    """The whole query and each of its words (in the forms vocabularies write) looked up in one request; a word's
    concepts become its alternatives, a concept named by the whole query its equivalents; without `related`, the
    concepts only related to those are left out (a search that ORs every term, unranked, would drown in them)."""
    query = Query.parse(text)
    whole = " ".join(text.split())
    # the whole query as typed and in the singular ("zones urbaines" is the concept "zone urbaine")
    wholes = list(dict.fromkeys([whole, " ".join(singular(w) or w for w in whole.split())]))
    if len(query.words) == 1:
        wholes = []  # the word's own lookups
    forms = {word: lookup_forms(word) for word in query.words[:8]}
    parts = sub_phrases(whole, set(query.words))
    try:
        answers = await _lookups(
            client,
            thesaurus,
            [*wholes, *parts, *(f for fs in forms.values() for f in fs)],
            lang,
            depth,
            timeout,
            languages,
        )
    except Exception as exc:
        log.warning("thesaurus unavailable: searching without expansion", extra={"error": str(exc)[:200]})
        return unexpanded(f"thesaurus unavailable, searched without expansion: {type(exc).__name__}")
    found = Expansion(applied=True)
    seen = {fold(w) for w in query.words} | {fold(whole)}
    # who names each concept: the whole query (""), a part of it ("occupation du sol" in "carte d'occupation du
    # sol"), or one word
    named = list(
        {
            (key, c.get("vocab"), c.get("uri")): (key, c)
            for key, texts in [("", wholes), *((part, [part]) for part in parts), *forms.items()]
            for t in texts
            for c in answers[t].get("concepts") or []
            if related or c.get("relation") != "related"
        }.values()
    )
    found.covers = dict(parts)
    _file_concepts(found, named, parts, whole, seen, [max_terms])
    return found


def _rank_of(named: tuple[str, dict[str, Any]], parts: dict[str, Any]) -> tuple[bool, bool, bool, bool]:
    """The whole query's concept first, then its parts', then the words', then narrower ones, related ones last:
    the term budget goes to the closest first."""
    key, concept = named
    return concept.get("relation") == "related", int(concept.get("depth") or 0) > 0, key != "", key not in parts


def _file_concepts(
    found: Expansion,
    named: list[tuple[str, dict[str, Any]]],
    parts: dict[str, Any],
    whole: str,
    seen: set[str],
    budget: list[int],
) -> None:
    """Each concept's labels into the bucket that says how it was reached, and the concept into the report."""
    labels_of = {(c.get("vocab"), c.get("uri")): c.get("prefLabel") for _, c in named}
    reached = {(c.get("vocab"), c.get("uri")) for _, c in named if c.get("relation") != "related"}
    for key, concept in sorted(named, key=lambda kc: _rank_of(kc, parts)):
        level = int(concept.get("depth") or 0)
        related = concept.get("relation") == "related"
        if related and (concept.get("vocab"), concept.get("uri")) in reached:
            continue  # reached more closely, or through another concept already
        reached.add((concept.get("vocab"), concept.get("uri")))
        bucket = (
            found.related.setdefault(concept.get("uri") or "", [])
            if related
            else found.narrower
            if level
            else found.equivalents
            if key == ""
            else found.parts.setdefault(key, [])
            if key in parts
            else found.alternatives.setdefault(key, [])
        )
        _add_labels(bucket, concept.get("labels") or [], seen, budget)
        via = labels_of.get((concept.get("vocab"), concept.get("via"))) or concept.get("via")
        found.concepts.append(
            {
                "uri": concept.get("uri"),
                "vocab": concept.get("vocab"),
                "prefLabel": concept.get("prefLabel"),
                "depth": level,
                "relation": "related" if related else "narrower" if level else "match",
                "why": f"related to {via!r}"
                if related
                else f"narrower, {level} level(s) down"
                if level
                else f"named by {key or whole!r}",
            }
        )


ELISION = re.compile(r"^(?:[cdjlmnst]|qu)['’]", re.IGNORECASE)
MAX_SUB_PHRASES = 24


def sub_phrases(text: str, query_words: set[str], longest: int = 4) -> dict[str, list[str]]:
    """The runs of 2 to `longest` words inside a longer query, each with the query words it covers. A run that
    starts or ends with a stop word ("de surface") is no concept's name; an elided article before it is dropped
    ("d'occupation du sol" -> "occupation du sol")."""
    tokens = text.split()
    out: dict[str, list[str]] = {}
    for size in range(2, min(longest, len(tokens) - 1) + 1):
        for start in range(len(tokens) - size + 1):
            run = [ELISION.sub("", tokens[start]), *tokens[start + 1 : start + size]]
            covered = [w for t in run for w in words(t) if w in query_words]
            ends = [*words(run[0])[:1], *words(run[-1])[-1:]]
            if covered and len(ends) == 2 and not any(fold(w) in STOPWORDS for w in ends):
                out.setdefault(" ".join(run), list(dict.fromkeys(covered)))
    return dict(list(out.items())[:MAX_SUB_PHRASES])


def _add_labels(bucket: list[str], labels: list[str], seen: set[str], budget: list[int]) -> None:
    for label in labels:
        if fold(label) not in seen and budget[0] > 0:
            seen.add(fold(label))
            bucket.append(label)
            budget[0] -= 1


# The vocabularies change when an operator reloads them, not between queries: answers are reused a few minutes.
LOOKUPS: TTLCache = TTLCache(maxsize=8192, ttl=300)


def _key(thesaurus: str, text: str, lang: str | None, depth: int, languages: list[str] | None) -> tuple[Any, ...]:
    return thesaurus, text[:200], lang, depth, tuple(languages or ())


def batches(texts: list[str], budget: int = 6000, most: int = 64) -> list[list[str]]:
    """The texts in groups whose query strings stay well under the services' 8 KiB bound (accented text is
    percent-encoded: up to 6 bytes a character), at most `most` texts each (the thesaurus's batch bound)."""
    out: list[list[str]] = [[]]
    size = 0
    for text in texts:
        cost = len(quote(text[:200])) + 3
        if out[-1] and (size + cost > budget or len(out[-1]) >= most):
            out.append([])
            size = 0
        out[-1].append(text)
        size += cost
    return [b for b in out if b]


async def _lookups(
    client: httpx.AsyncClient,
    thesaurus: str,
    texts: list[str],
    lang: str | None,
    depth: int,
    timeout: float,
    languages: list[str] | None,
) -> dict[str, dict[str, Any]]:
    """text -> the thesaurus's answer for it (the concepts it names exactly): those not reused from LOOKUPS asked
    in one request (more for a very long query)."""
    known = {t: hit for t in texts if (hit := LOOKUPS.get(_key(thesaurus, t, lang, depth, languages))) is not None}
    missing = list(dict.fromkeys(t for t in texts if t not in known))

    async def ask(batch: list[str]) -> None:
        params = (
            [("q", t[:200]) for t in batch]
            + [("depth", str(depth)), ("related", str(depth > 0).lower())]  # depth 0: the named concepts only
            + ([("lang", lang)] if lang else [])
            + ([("languages", ",".join(languages))] if languages else [])
        )
        response = await client.get(f"{thesaurus}/expand/batch", params=tuple(params), timeout=timeout)
        response.raise_for_status()
        for text, answer in zip(batch, response.json()["results"], strict=True):
            known[text] = LOOKUPS[_key(thesaurus, text, lang, depth, languages)] = answer

    await asyncio.gather(*(ask(b) for b in batches(missing)))
    return known
