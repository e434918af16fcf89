"""Thesaurus expansion of free text: the concepts a query names, their labels in every language, narrower ones.

The thesaurus service answers; when it cannot, the search goes on unexpanded and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import httpx

from eolake_search.engine import fold

log = logging.getLogger(__name__)


@dataclass
class Expansion:
    applied: bool
    equivalents: list[str] = field(default_factory=list)  # labels of the concepts the query names
    narrower: list[str] = field(default_factory=list)  # labels of their narrower concepts
    concepts: list[dict] = field(default_factory=list)
    notice: str | None = None

    @property
    def terms(self) -> list[str]:
        return [*self.equivalents, *self.narrower]

    def report(self, depth: int) -> dict:
        """What the answer says about it: the concepts found, the terms searched, and why each was added."""
        if not self.applied:
            return {"applied": False, **({"error": self.notice} if self.notice else {})}
        return {"applied": True, "depth": depth, "terms": self.terms, "concepts": self.concepts,
                "why": {"equivalents": "labels, in every loaded language, of the concepts the query names "
                                       "(ranked below matches of the query's own words)",
                        "narrower": "labels of narrower concepts (a lower weight still)"}}


def unexpanded(reason: str) -> Expansion:
    return Expansion(applied=False, notice=reason)


async def expand(client: httpx.AsyncClient, thesaurus: str, text: str, lang: str | None, depth: int,
                 timeout: float, max_terms: int) -> Expansion:
    try:
        params = {"q": text[:200], "depth": depth, **({"lang": lang} if lang else {})}
        response = await client.get(f"{thesaurus}/expand", params=params, timeout=timeout)
        response.raise_for_status()
        data = response.json()
    except Exception as exc:
        log.warning("thesaurus unavailable: searching without expansion", extra={"error": str(exc)[:200]})
        return unexpanded(f"thesaurus unavailable, searched without expansion: {type(exc).__name__}")
    own = fold(" ".join(text.split()))
    seen = {own}
    equivalents, narrower, concepts = [], [], []
    for concept in data.get("concepts") or []:
        level = int(concept.get("depth") or 0)
        bucket = equivalents if level == 0 else narrower
        for label in concept.get("labels") or []:
            if fold(label) not in seen and len(equivalents) + len(narrower) < max_terms:
                seen.add(fold(label))
                bucket.append(label)
        concepts.append({"uri": concept.get("uri"), "vocab": concept.get("vocab"),
                         "prefLabel": concept.get("prefLabel"), "depth": level,
                         "why": "named by the query" if level == 0 else f"narrower, {level} level(s) down"})
    return Expansion(applied=True, equivalents=equivalents, narrower=narrower, concepts=concepts)
