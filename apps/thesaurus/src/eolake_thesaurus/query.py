"""Read-side of the thesaurus index: Skosmos-style lookups, search, autocomplete and query expansion."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from eolake_thesaurus.store import DICTIONARY_URI, connect, glob_pattern, normalise


class NotFound(LookupError):
    pass


class Thesaurus:
    """One read-only SQLite connection per thread over the index file."""

    def __init__(self, db_path: Path):
        self.db_path = Path(db_path)
        self._local = threading.local()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.db_path, readonly=True)
        return conn

    def _all(self, sql: str, *args: object) -> list[sqlite3.Row]:
        return self.conn.execute(sql, args).fetchall()

    # vocabularies -------------------------------------------------------------------------------------------
    def vocabularies(self) -> list[dict[str, Any]]:
        out = []
        for row in self._all("SELECT * FROM vocabularies ORDER BY id"):
            langs = [r[0] for r in self._all("SELECT DISTINCT lang FROM labels WHERE vocab = ? ORDER BY 1", row["id"])]
            count = self._all("SELECT count(*) FROM concepts WHERE vocab = ?", row["id"])[0][0]
            out.append(
                {
                    "uri": row["scheme"] or row["id"],
                    "id": row["id"],
                    "title": row["title"],
                    "attribution": row["attribution"],
                    "languages": langs,
                    "conceptCount": count,
                    "sources": json.loads(row["sources"]),
                }
            )
        return out

    def vocabulary(self, vocab: str) -> dict[str, Any]:
        for v in self.vocabularies():
            if v["id"] == vocab:
                return v
        raise NotFound(f"unknown vocabulary {vocab!r}")

    def check_vocab(self, vocab: str) -> None:
        if not self._all("SELECT 1 FROM vocabularies WHERE id = ?", vocab):
            raise NotFound(f"unknown vocabulary {vocab!r}")

    def check_concept(self, vocab: str, uri: str) -> None:
        self.check_vocab(vocab)
        if not self._all("SELECT 1 FROM concepts WHERE vocab = ? AND uri = ?", vocab, uri):
            raise NotFound(f"no concept {uri!r} in vocabulary {vocab!r}")

    # labels ---------------------------------------------------------------------------------------------------
    def pref_label(self, vocab: str, uri: str, lang: str | None) -> str | None:
        rows = self._all("SELECT lang, text FROM labels WHERE vocab = ? AND uri = ? AND kind = 'pref'", vocab, uri)
        by_lang = {r["lang"]: r["text"] for r in rows}
        return by_lang.get(lang or "en") or by_lang.get("en") or (next(iter(by_lang.values())) if by_lang else None)

    def labels(self, vocab: str, uri: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {"prefLabel": {}, "altLabel": {}, "hiddenLabel": {}}
        for r in self._all(
            "SELECT kind, lang, text FROM labels WHERE vocab = ? AND uri = ? ORDER BY lang, text", vocab, uri
        ):
            key = {"pref": "prefLabel", "hidden": "hiddenLabel"}.get(r["kind"], "altLabel")  # alt, translation
            if key == "prefLabel":
                out[key][r["lang"]] = r["text"]
            else:
                out[key].setdefault(r["lang"], []).append(r["text"])
        return out

    def concept(self, vocab: str, uri: str, lang: str | None) -> dict[str, Any]:
        self.check_concept(vocab, uri)
        labels = self.labels(vocab, uri)
        notes: dict[str, dict[str, str]] = {}
        for r in self._all("SELECT kind, lang, text FROM notes WHERE vocab = ? AND uri = ?", vocab, uri):
            notes.setdefault(r["kind"], {})[r["lang"]] = r["text"]
        top = self._all("SELECT top FROM concepts WHERE vocab = ? AND uri = ?", vocab, uri)[0][0]
        return {
            "uri": uri,
            "type": "skos:Concept",
            "vocab": vocab,
            "topConcept": bool(top),
            "prefLabel": self.pref_label(vocab, uri, lang),
            **labels,
            **notes,
            **{rel: self._related(vocab, uri, rel, lang) for rel in ("broader", "narrower", "related")},
        }

    def _related(self, vocab: str, uri: str, rel: str, lang: str | None) -> list[dict[str, Any]]:
        rows = self._all("SELECT target FROM relations WHERE vocab = ? AND uri = ? AND rel = ?", vocab, uri, rel)
        items = [{"uri": r[0], "prefLabel": self.pref_label(vocab, r[0], lang)} for r in rows]
        return sorted(items, key=lambda i: ((i["prefLabel"] or "").casefold(), i["uri"]))

    def relation(self, vocab: str, uri: str, rel: str, lang: str | None) -> list[dict[str, Any]]:
        self.check_concept(vocab, uri)
        return self._related(vocab, uri, rel, lang)

    def has_children(self, vocab: str, uri: str) -> bool:
        return bool(
            self._all("SELECT 1 FROM relations WHERE vocab = ? AND uri = ? AND rel = 'narrower' LIMIT 1", vocab, uri)
        )

    def transitive(
        self, vocab: str, uri: str, rel: str, lang: str | None, limit: int = 1000
    ) -> dict[str, dict[str, Any]]:
        """Skosmos' broaderTransitive/narrowerTransitive: every concept reached, with its direct links."""
        self.check_concept(vocab, uri)
        out: dict[str, dict[str, Any]] = {}
        frontier = [uri]
        while frontier and len(out) < limit:
            nxt = []
            for u in frontier:
                if u in out:
                    continue
                links = [
                    r[0]
                    for r in self._all(
                        "SELECT target FROM relations WHERE vocab = ? AND uri = ? AND rel = ?", vocab, u, rel
                    )
                ]
                out[u] = {"uri": u, "prefLabel": self.pref_label(vocab, u, lang), rel: sorted(links)}
                nxt.extend(links)
            frontier = nxt
        return out

    def hierarchy(self, vocab: str, uri: str, lang: str | None) -> dict[str, dict[str, Any]]:
        chain = self.transitive(vocab, uri, "broader", lang)
        for u, node in chain.items():
            node["hasChildren"] = self.has_children(vocab, u)
            node["narrower"] = [
                {"uri": n["uri"], "label": n["prefLabel"], "hasChildren": self.has_children(vocab, n["uri"])}
                for n in self._related(vocab, u, "narrower", lang)
            ]
            if not node["broader"]:
                node["top"] = vocab
        return chain

    def top_concepts(self, vocab: str, lang: str | None) -> list[dict[str, Any]]:
        self.check_vocab(vocab)
        rows = self._all("SELECT uri FROM concepts WHERE vocab = ? AND top = 1", vocab)
        if not rows:  # no declared top concepts: those without a broader concept
            rows = self._all(
                "SELECT uri FROM concepts c WHERE vocab = ? AND NOT EXISTS (SELECT 1 FROM relations r "
                "WHERE r.vocab = c.vocab AND r.uri = c.uri AND r.rel = 'broader')",
                vocab,
            )
        items = [
            {
                "uri": r[0],
                "label": self.pref_label(vocab, r[0], lang),
                "topConceptOf": vocab,
                "hasChildren": self.has_children(vocab, r[0]),
            }
            for r in rows
        ]
        return sorted(items, key=lambda i: ((i["label"] or "").casefold(), i["uri"]))

    # search ---------------------------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        lang: str | None = None,
        vocab: str | None = None,
        limit: int = 50,
        offset: int = 0,
        prefix: bool = False,
    ) -> list[dict[str, Any]]:
        """Labels matching `query` (`*` wildcards; exact otherwise, or a prefix with prefix=True), case and accent
        insensitive, preferred labels first; one result per concept."""
        pattern = glob_pattern(query) + ("*" if prefix and not query.endswith("*") else "")
        sql = (
            "SELECT vocab, uri, kind, lang, text FROM labels WHERE norm GLOB ? AND uri NOT LIKE ?"
            + (" AND lang = ?" if lang else "")
            + (" AND vocab = ?" if vocab else "")
            + " ORDER BY CASE kind WHEN 'pref' THEN 0 WHEN 'alt' THEN 1 ELSE 2 END, length(norm), norm, uri"
        )
        args = [pattern, DICTIONARY_URI + "%"] + ([lang] if lang else []) + ([vocab] if vocab else [])
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for r in self.conn.execute(sql, args):
            key = (r["vocab"], r["uri"])
            if key in seen:
                continue
            result = {
                "uri": r["uri"],
                "type": ["skos:Concept"],
                "vocab": r["vocab"],
                "lang": r["lang"] or lang,
                "prefLabel": self.pref_label(r["vocab"], r["uri"], r["lang"] or lang),
            }
            if r["kind"] == "alt":
                result["altLabel"] = r["text"]
            elif r["kind"] == "hidden":
                result["hiddenLabel"] = r["text"]
            seen[key] = result
            if len(seen) >= offset + limit:
                break
        return list(seen.values())[offset : offset + limit]

    def lookup(self, vocab: str, label: str, lang: str | None) -> list[dict[str, Any]]:
        self.check_vocab(vocab)
        sql = "SELECT uri, kind, lang, text FROM labels WHERE vocab = ? AND norm = ? AND kind != 'translation'" + (
            " AND lang = ?" if lang else ""
        )
        rows = self.conn.execute(sql, [vocab, normalise(label)] + ([lang] if lang else [])).fetchall()
        out: dict[str, dict[str, Any]] = {}
        for r in sorted(rows, key=lambda r: r["kind"] != "pref"):
            out.setdefault(
                r["uri"],
                {
                    "uri": r["uri"],
                    "vocab": vocab,
                    "lang": r["lang"],
                    "prefLabel": self.pref_label(vocab, r["uri"], r["lang"]),
                    "matchedLabel": r["text"],
                    "matchedKind": r["kind"],
                },
            )
        return list(out.values())

    # expansion ------------------------------------------------------------------------------------------------
    def expand(
        self,
        q: str,
        lang: str | None = None,
        depth: int = 1,
        vocab: str | None = None,
        max_terms: int = 50,
        languages: list[str] | None = None,
        words: bool = True,
        related: bool = False,
    ) -> dict[str, Any]:
        """Concepts whose label equals `q` (or, failing that and with `words`, one of its words), their narrower
        concepts down to `depth`, with `related` the concepts they are skos:related to (one link, not followed
        further), and every preferred, alternative and translated label of those in every language (only those in
        `languages`, when given, and labels without a language); a related concept, a looser link, gives its
        preferred labels only. Each concept says how it was reached
        (`relation`: match, narrower or related; `via`: the matched concept of a related one). A dictionary entry
        reached through one of its translations gives its headword only: "foudre" finds the English "lightning",
        whose other translations ("éclair") are French words, not more English ones."""
        text = " ".join(q.split())
        matches = self._match(text, vocab)
        if not matches and words:
            for word in dict.fromkeys(text.split()):
                matches = {**self._match(word, vocab), **matches}
        concepts: dict[tuple[str, str], int] = {}
        frontier = sorted(matches, key=lambda key: key[1].startswith(DICTIONARY_URI))  # thesauri's concepts first
        for level in range(depth + 1):
            nxt = []
            for key in frontier:
                if key in concepts:
                    continue
                concepts[key] = level
                if level < depth:
                    nxt += [
                        (key[0], r[0])
                        for r in self._all(
                            "SELECT target FROM relations WHERE vocab = ? AND uri = ? AND rel = 'narrower'", *key
                        )
                    ]
            frontier = nxt
        via = self._related_to(matches, concepts) if related else {}
        terms: dict[str, None] = {text: None}
        described = []
        for (v, u), level in [*concepts.items(), *((key, 1) for key in via)]:
            rows = self._all(
                "SELECT kind, lang, text FROM labels WHERE vocab = ? AND uri = ? AND kind != 'hidden' "
                "ORDER BY kind DESC, lang != ?, lang, text",
                v,
                u,
                lang or "en",
            )
            used = [
                r["text"]
                for r in rows
                if len(r["text"]) > 2  # skip codes such as INSPIRE's "hy"
                and (not languages or not r["lang"] or r["lang"] in languages)
                and (r["kind"] == "pref" or not (matches.get((v, u)) or (v, u) in via))
            ]
            for t in used:
                if len(terms) < max_terms:
                    terms.setdefault(t, None)
            reached = {"relation": "related", "via": via[(v, u)]} if (v, u) in via else {}
            described.append(
                {
                    "uri": u,
                    "vocab": v,
                    "depth": level,
                    "relation": "narrower" if level else "match",
                    **reached,
                    "prefLabel": self.pref_label(v, u, lang),
                    "labels": used,
                }
            )
        return {"query": q, "lang": lang, "depth": depth, "concepts": described, "terms": list(terms)}

    def _related_to(
        self, matches: dict[tuple[str, str], bool], reached: dict[tuple[str, str], int]
    ) -> dict[tuple[str, str], str]:
        """(vocab, uri) of the concepts skos:related to a matched one and not reached otherwise -> that one's uri."""
        out: dict[tuple[str, str], str] = {}
        for vocab, uri in matches:
            for (target,) in self._all(
                "SELECT target FROM relations WHERE vocab = ? AND uri = ? AND rel = 'related' ORDER BY target",
                vocab,
                uri,
            ):
                if (vocab, target) not in reached:
                    out.setdefault((vocab, target), uri)
        return out

    def _match(self, text: str, vocab: str | None) -> dict[tuple[str, str], bool]:
        """(vocab, uri) of the concepts with a label equal to `text` -> whether only a translation was."""
        sql = (
            "SELECT vocab, uri, min(kind = 'translation') FROM labels WHERE norm = ?"
            + (" AND vocab = ?" if vocab else "")
            + " GROUP BY vocab, uri"
        )
        rows = self.conn.execute(sql, [normalise(text)] + ([vocab] if vocab else []))
        return {(r[0], r[1]): bool(r[2]) for r in rows}
