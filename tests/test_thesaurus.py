"""Thesaurus: the SKOS index (import, idempotence, malformed files) and the Skosmos-compatible API on real GEMET."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest
from eolake_thesaurus.app import create_app
from eolake_thesaurus.settings import ThesaurusSettings, index_path
from eolake_thesaurus.store import RdfImportError, content_hash, import_file
from fastapi.testclient import TestClient

FLOOD = "http://www.eionet.europa.eu/gemet/concept/3298"
FLOODING = "http://www.eionet.europa.eu/gemet/concept/3301"
HYDROLOGIC_CYCLE = "http://www.eionet.europa.eu/gemet/concept/4116"
HYDROGRAPHY = "http://rdfdata.eionet.europa.eu/inspirethemes/themes/8"


@pytest.fixture(scope="module")
def client(thesaurus_storage):
    with TestClient(create_app(ThesaurusSettings(storage_path=thesaurus_storage))) as c:
        yield c


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


def test_vocabularies_are_bilingual_and_attributed(client):
    vocabs = {v["id"]: v for v in client.get("/rest/v1/vocabularies").json()["vocabularies"]}
    # FreeDict: the bootstrap installs its Debian packages; eo: shipped with the thesaurus package
    assert set(vocabs) == {"gemet", "inspire", "freedict", "eo"}
    assert vocabs["eo"]["languages"] == ["en", "fr"] and "GCOS" in vocabs["eo"]["attribution"]
    assert vocabs["gemet"]["languages"] == ["en", "fr"] and vocabs["gemet"]["conceptCount"] == 5520
    assert "European Environment Agency" in vocabs["gemet"]["attribution"]
    assert "European Commission" in vocabs["inspire"]["attribution"]
    assert len(vocabs["inspire"]["languages"]) >= 23 and vocabs["inspire"]["conceptCount"] == 34


def test_bilingual_lookup_french_to_english_and_back(client):
    fr = client.get("/rest/v1/gemet/lookup", params={"label": "Inondation", "lang": "fr"}).json()["result"]
    assert [r["uri"] for r in fr] == [FLOODING]
    label = client.get("/rest/v1/gemet/label", params={"uri": FLOODING, "lang": "en"}).json()
    assert label["prefLabel"] == "flooding" and label["prefLabels"] == {"en": "flooding", "fr": "inondation"}
    en = client.get("/rest/v1/search", params={"query": "flood", "lang": "en"}).json()["results"]
    assert en[0]["uri"] == FLOOD
    assert client.get("/rest/v1/gemet/label", params={"uri": FLOOD, "lang": "fr"}).json()["prefLabel"] == "crue"


def test_transitive_narrower_on_a_real_gemet_branch(client):
    direct = client.get("/rest/v1/gemet/narrower", params={"uri": HYDROLOGIC_CYCLE, "lang": "en"}).json()["narrower"]
    assert FLOOD in [n["uri"] for n in direct]
    transitive = client.get("/rest/v1/gemet/narrowerTransitive", params={"uri": HYDROLOGIC_CYCLE}).json()
    reached = transitive["narrowerTransitive"]
    # flood's own narrower concepts (flash flood …) are two levels down
    assert FLOOD in reached and "http://www.eionet.europa.eu/gemet/concept/15170" in reached
    broader = client.get("/rest/v1/gemet/broaderTransitive", params={"uri": FLOOD}).json()["broaderTransitive"]
    assert HYDROLOGIC_CYCLE in broader
    hierarchy = client.get("/rest/v1/gemet/hierarchy", params={"uri": FLOOD}).json()["broaderTransitive"]
    assert hierarchy[FLOOD]["hasChildren"] is True


def test_search_by_alt_label_wildcard_and_autocomplete(client):
    alt = client.get("/rest/v1/inspire/search", params={"query": "HY"}).json()["results"]
    assert alt[0]["uri"] == HYDROGRAPHY and alt[0]["altLabel"] == "hy"
    wild = client.get("/rest/v1/search", params={"query": "inond*", "lang": "fr"}).json()["results"]
    assert FLOODING in [r["uri"] for r in wild]
    assert all(r["lang"] == "fr" for r in wild)
    mid = client.get("/rest/v1/gemet/search", params={"query": "*hydrolog*", "maxhits": 5}).json()["results"]
    assert len(mid) == 5
    auto = client.get("/autocomplete", params={"q": "hydrog", "lang": "fr", "limit": 5}).json()["suggestions"]
    assert auto and all(s["label"].lower().startswith("hydrog") for s in auto)
    assert client.get("/rest/v1/gemet/topConcepts").json()["topconcepts"]


def test_expansion_reports_concepts_and_terms(client):
    body = client.get("/expand", params={"q": "inondation"}).json()
    assert "flooding" in body["terms"] and "coastal flooding" in body["terms"]
    assert {c["uri"] for c in body["concepts"]} >= {FLOODING}
    gemet = client.get("/expand", params={"q": "inondation", "depth": 0, "vocab": "gemet"}).json()
    assert gemet["terms"] == ["inondation", "flooding"]
    assert client.get("/expand", params={"q": "xyzzy plugh"}).json()["concepts"] == []


def test_dictionaries_translate_both_ways_without_chaining_words(client):
    # a French word the thesauri do not know, translated; its English translation never looked up in French
    hauteur = client.get("/expand", params={"q": "hauteur", "depth": 0}).json()
    assert "height" in hauteur["terms"] and {c["vocab"] for c in hauteur["concepts"]} == {"freedict"}
    # reached through the English-French entry's translation: the English headword, not its other translations
    foudre = client.get("/expand", params={"q": "foudre", "depth": 0}).json()
    lightning = [c for c in foudre["concepts"] if c["prefLabel"] == "lightning" and c["vocab"] == "freedict"]
    assert lightning and lightning[0]["labels"] == ["lightning"]
    # an English word reaching French entries through their translations gives those French headwords only
    cover = client.get("/expand", params={"q": "cover", "depth": 0}).json()
    assert "blanket" not in cover["terms"] and "couverture" in cover["terms"]
    # dictionary words are not concepts to suggest while typing
    auto = client.get("/autocomplete", params={"q": "foudr"}).json()["suggestions"]
    assert all(s["vocab"] != "freedict" for s in auto)


def test_the_eo_vocabulary_links_what_gemet_does_not(client):
    # GEMET's "occupation du sol" is "land occupation"; the EO vocabulary's is land cover, as datasets name it
    land = client.get("/expand", params={"q": "occupation du sol", "depth": 0, "vocab": "eo"}).json()
    assert "land cover" in land["terms"]
    indice = client.get("/expand", params={"q": "indice", "depth": 0}).json()
    assert "index" in indice["terms"]
    # variables are narrower concepts of their domain
    ocean = client.get("/expand", params={"q": "océan", "depth": 1, "vocab": "eo"}).json()
    narrower = {c["prefLabel"] for c in ocean["concepts"] if c["depth"] == 1}
    assert {"sea surface temperature", "sea surface salinity"} <= narrower


def test_expansion_in_some_languages_and_without_word_fallback(client):
    every = client.get("/expand", params={"q": "hydrography", "depth": 0, "vocab": "inspire"}).json()["terms"]
    assert "Hydrografie" in every
    some = client.get(
        "/expand", params={"q": "hydrography", "depth": 0, "vocab": "inspire", "languages": "en,fr"}
    ).json()["terms"]
    assert "Hydrografie" not in some and "Hydrographie" in some
    assert client.get("/expand", params={"q": "snow flood", "words": "false"}).json()["concepts"] == []
    assert client.get("/expand", params={"q": "snow flood"}).json()["concepts"]
    problem(client.get("/expand", params={"q": "flood", "languages": "en;fr"}), 400)


def test_related_concepts_are_added_only_when_asked_with_their_preferred_labels(client):
    asked = {"q": "sécheresse", "languages": "en,fr"}
    plain = client.get("/expand", params=asked).json()
    assert {c["relation"] for c in plain["concepts"]} <= {"match", "narrower"} and "soil moisture" not in plain["terms"]
    body = client.get("/expand", params={**asked, "related": "true"}).json()
    related = {c["prefLabel"]: c for c in body["concepts"] if c["relation"] == "related"}
    assert {"soil moisture", "precipitation"} <= set(related), sorted(related)
    assert related["soil moisture"]["via"] == "urn:eolake:eo:drought"  # the matched concept it is related to
    assert related["soil moisture"]["labels"] == ["soil moisture", "humidité du sol"]  # preferred labels only
    matched = {c["uri"] for c in body["concepts"] if c["relation"] == "match"}
    assert not matched & {c["uri"] for c in related.values()}  # a concept reached otherwise is not repeated
    batch = client.get("/expand/batch", params={**asked, "related": "true"}).json()["results"][0]
    assert (
        batch["concepts"]
        == client.get("/expand", params={**asked, "related": "true", "words": "false"}).json()["concepts"]
    )
    problem(client.get("/expand", params={**asked, "related": "perhaps"}), 400)


def test_batch_expansion_answers_each_text_exactly_in_order(client):
    body = client.get(
        "/expand/batch",
        params=[("q", "inondation"), ("q", "snow flood"), ("q", "neige"), ("depth", "0"), ("languages", "en,fr")],
    ).json()
    inondation, nothing, neige = body["results"]
    assert inondation == client.get("/expand", params={"q": "inondation", "depth": 0, "languages": "en,fr"}).json()
    assert nothing["concepts"] == []  # exact lookups: its words are not looked up on their own
    assert "snow" in neige["terms"]
    problem(client.get("/expand/batch"), 400)
    problem(client.get("/expand/batch", params=[("q", "x")] * 65), 400)
    problem(client.get("/expand/batch", params={"q": "x" * 201}), 400)
    problem(client.get("/expand/batch", params={"q": "flood", "depth": 99}), 400)
    problem(client.get("/expand/batch", params={"q": "flood", "vocab": "nope"}), 404)


def test_malformed_dictionary_is_refused_and_changes_nothing(thesaurus_storage, tmp_path):
    from eolake_thesaurus.dictionary import import_dictionary

    db = tmp_path / "index.sqlite"
    shutil.copy(index_path(thesaurus_storage), db)
    before = content_hash(sqlite3.connect(db), "freedict")
    (tmp_path / "bad.index").write_text("foudre\tzz!\tq\n", encoding="utf-8")
    (tmp_path / "bad.dict.dz").write_bytes(b"not gzip")
    with pytest.raises(RdfImportError, match="bad.dict.dz: not a gzip/dictzip file"):
        import_dictionary(db, tmp_path / "bad.index", "fr", "en", "freedict", "x")
    with pytest.raises(RdfImportError, match="needs"):
        import_dictionary(db, tmp_path / "missing.index", "fr", "en", "freedict", "x")
    assert content_hash(sqlite3.connect(db), "freedict") == before


def test_unknown_things_and_bad_parameters(client):
    assert "no concept" in problem(client.get("/rest/v1/gemet/data", params={"uri": "http://x/none"}), 404)["detail"]
    problem(client.get("/rest/v1/nope/topConcepts"), 404)
    problem(client.get("/rest/v1/gemet/broader", params={"uri": "http://x/none"}), 404)
    problem(client.get("/rest/v1/gemet/lookup", params={"label": "zzzz-not-a-label"}), 404)
    status = client.get("/rest/v1/search").status_code
    assert status in (400, 422)
    problem(client.get("/rest/v1/search", params={"query": "a*", "maxhits": 100000}), 400)
    problem(client.get("/expand", params={"q": "flood", "depth": 99}), 400)
    assert client.get("/rest/v1/search", params={"query": "flood", "lang": "not a language!"}).status_code in (400, 422)


def test_malformed_rdf_names_the_position_and_changes_nothing(thesaurus_storage, tmp_path, shared_data):
    db = tmp_path / "index.sqlite"
    shutil.copy(index_path(thesaurus_storage), db)
    before = content_hash(sqlite3.connect(db), "gemet")
    bad = tmp_path / "broken.rdf"
    text = (shared_data / "thesauri" / "inspire-theme.rdf").read_text()
    bad.write_text(text[: len(text) // 2] + "<skos:Concept rdf:about=>" + text[len(text) // 2 :])
    with pytest.raises(RdfImportError) as err:
        import_file(db, bad, "gemet")
    assert "line" in str(err.value) and "broken.rdf" in str(err.value)
    bad_ttl = tmp_path / "broken.ttl"
    bad_ttl.write_text(
        "@prefix skos: <http://www.w3.org/2004/02/skos/core#> .\n<http://x/a> a skos:Concept ;\n"
        "  skos:prefLabel 'a'@en ;;; oops\n"
    )
    with pytest.raises(RdfImportError, match="line 3|position|line"):
        import_file(db, bad_ttl, "gemet")
    assert content_hash(sqlite3.connect(db), "gemet") == before


def test_reimport_changes_nothing_and_turtle_imports(thesaurus_storage, tmp_path, shared_data):
    db = tmp_path / "index.sqlite"
    shutil.copy(index_path(thesaurus_storage), db)
    before = content_hash(sqlite3.connect(db), "inspire")
    report = import_file(db, shared_data / "thesauri" / "inspire-theme.rdf", "inspire")
    assert report.added == {"concepts": 0, "labels": 0, "relations": 0, "notes": 0}
    assert report.content_hash == before
    ttl = tmp_path / "tiny.ttl"
    ttl.write_text(
        "@prefix skos: <http://www.w3.org/2004/02/skos/core#> .\n"
        "<http://x/water> a skos:Concept ; skos:prefLabel 'water'@en, 'eau'@fr ; skos:altLabel 'H2O'@en ;"
        " skos:narrower <http://x/river> .\n"
        "<http://x/river> a skos:Concept ; skos:prefLabel 'river'@en .\n"
    )
    first = import_file(db, ttl, "tiny")
    assert first.concepts == 2 and first.added["relations"] == 2  # narrower and its inverse broader
    assert import_file(db, ttl, "tiny").content_hash == first.content_hash


def test_cli_import(tmp_path, shared_data):
    from eolake.cli import main

    rdf = str(shared_data / "thesauri" / "inspire-theme.rdf")
    assert main(["--state-dir", str(tmp_path), "thesaurus", "import", rdf, "--vocabulary", "inspire"]) == 0
    bad = tmp_path / "bad.rdf"
    bad.write_text("<rdf:RDF")
    assert main(["--state-dir", str(tmp_path), "thesaurus", "import", str(bad)]) == 2


def write_dictd(folder, name: str, entries: list[tuple[str, str]], index_lines: list[str] = ()) -> None:
    """A dictd dictionary: the entries' texts in one gzip file, the index of their base-64 offsets and lengths."""
    import gzip

    from eolake_thesaurus.dictionary import BASE64

    def b64(n: int) -> str:
        return (b64(n // 64) if n >= 64 else "") + BASE64[n % 64]

    data, index = b"", []
    for word, text in [("00-database-short", "00-database-short\n     Tiny French-English\n"), *entries]:
        raw = text.encode()
        index.append(f"{word}\t{b64(len(data))}\t{b64(len(raw))}")
        data += raw
    (folder / f"{name}.dict.dz").write_bytes(gzip.compress(data))
    (folder / f"{name}.index").write_text("\n".join([*index, *index_lines]) + "\n", encoding="utf-8")


def test_cli_import_dict(tmp_path, capsys):
    from eolake.cli import main
    from eolake.embedded.state import StateDir

    entries = [
        ("névé", "névé /neve/ <n, masc>\n1. firn, [geol] granular snow\n"),
        ("crue", "crue <n, fem>\nflood (of a river), spate\n"),
    ]
    write_dictd(tmp_path, "tiny", entries)
    state = ["--state-dir", str(tmp_path / "state")]
    assert (
        main(
            [
                *state,
                "thesaurus",
                "import-dict",
                str(tmp_path / "tiny.dict.dz"),
                "--from",
                "fr",
                "--to",
                "en",
                "--vocabulary",
                "tiny",
            ]
        )
        == 0
    )
    assert "tiny: 2 entries" in capsys.readouterr().out
    storage = StateDir(tmp_path / "state").storage
    db = index_path(storage)
    with TestClient(create_app(ThesaurusSettings(storage_path=storage))) as c:
        assert {"firn", "granular snow"} <= set(c.get("/expand", params={"q": "névé", "depth": 0}).json()["terms"])
        assert c.get("/rest/v1/vocabularies").json()["vocabularies"][0]["title"] == "Tiny French-English"
    before = content_hash(sqlite3.connect(db), "tiny")
    # a bad line after good ones: one line naming the file and the line, and nothing of the file written
    write_dictd(tmp_path, "broken", [*entries, ("sec", "sec\ndry\n")], ["glace\tB!\tC"])
    for bad, says in (
        (tmp_path / "broken.index", "broken.index:5: 'B!' is not a dictd base-64 number"),
        (tmp_path / "missing.index", "needs missing.index and missing.dict.dz"),
    ):
        assert (
            main([*state, "thesaurus", "import-dict", str(bad), "--from", "fr", "--to", "en", "--vocabulary", "tiny"])
            == 2
        )
        message = capsys.readouterr().err
        assert says in message and message.count("\n") == 1, message
    assert (
        main(
            [
                *state,
                "thesaurus",
                "import-dict",
                str(tmp_path / "tiny.index"),
                "--from",
                "French",
                "--to",
                "en",
                "--vocabulary",
                "tiny",
            ]
        )
        == 2
    )
    assert "not a language tag" in capsys.readouterr().err
    assert content_hash(sqlite3.connect(db), "tiny") == before


def test_billion_laughs_is_refused_before_parsing(tmp_path):
    entities = ['<!ENTITY l0 "lol">'] + [f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)]
    laughs = tmp_path / "laughs.rdf"
    laughs.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE rdf:RDF [\n' + "\n".join(entities) + "\n]>\n"
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns:skos="http://www.w3.org/2004/02/skos/core#"><skos:Concept rdf:about="http://x/1">'
        "<skos:prefLabel>&l9;</skos:prefLabel></skos:Concept></rdf:RDF>"
    )
    with pytest.raises(RdfImportError, match="declares the XML entity 'l0'"):
        import_file(tmp_path / "index.sqlite", laughs, "laughs")


def test_the_routes_dependencies_can_be_swapped(thesaurus_storage, tmp_path):
    """The index and the settings reach the routes as dependencies: a test (or a deployment) overrides them."""
    from eolake_thesaurus.dependencies import get_settings, get_thesaurus
    from eolake_thesaurus.query import Thesaurus

    from eolake_kit import __version__

    app = create_app(ThesaurusSettings(storage_path=tmp_path))  # an empty storage: no index built
    with TestClient(app) as c:
        assert "index has not been built" in problem(c.get("/rest/v1/vocabularies"), 503)["detail"]
        assert c.get("/openapi.json").json()["info"]["version"] == __version__
        strict = ThesaurusSettings(storage_path=thesaurus_storage, max_limit=5)
        app.dependency_overrides[get_settings] = lambda: strict
        app.dependency_overrides[get_thesaurus] = lambda: Thesaurus(strict.index_path)
        assert c.get("/autocomplete", params={"q": "flo", "limit": 5}).status_code == 200
        assert (
            problem(c.get("/autocomplete", params={"q": "flo", "limit": 6}), 400)["detail"] == "limit must be at most 5"
        )


# The pod's readiness, run in a mount namespace of its own where the index folder is bind-mounted read-only, as the
# Kubernetes Deployment mounts the init container's volume into the server.
READ_ONLY_SERVER = """
import json, sys
from fastapi.testclient import TestClient
from eolake_thesaurus.app import create_app
with TestClient(create_app()) as client:
    ready = client.get("/readyz")
    found = client.get("/rest/v1/inspire/lookup", params={"label": "Hydrography", "lang": "en"})
    print(json.dumps([ready.status_code, found.status_code, found.json() if found.status_code == 200 else found.text]))
"""
# What the readiness check asks of the index, without the web stack.
READ_ONLY_INDEX = """
from eolake_thesaurus.query import Thesaurus
from eolake_thesaurus.settings import ThesaurusSettings
print(len(Thesaurus(ThesaurusSettings().index_path).vocabularies()))
"""


def read_only(folder, env: dict, code: str) -> subprocess.CompletedProcess:
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" -c "$3"'
    command = ["unshare", "--map-root-user", "--mount", "sh", "-c", script, "sh", str(folder), sys.executable, code]
    return subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_prepared_index_is_served_from_a_read_only_mount(thesaurus_storage, shared_data, tmp_path):
    """The init container (`python -m eolake_thesaurus.prepare`) leaves an index that the server, whose volume is
    read-only, can open: a WAL-mode SQLite file, as every writer leaves it, cannot be (each reader needs to create
    its -shm file beside it), so the pod would never be ready."""
    data = tmp_path / "data"
    shutil.copytree(thesaurus_storage, data)
    writer = sqlite3.connect(index_path(data))  # as the import leaves it: WAL on, its files gone with the last close
    writer.execute("PRAGMA journal_mode=WAL")
    writer.close()
    env = {**os.environ, "EOLAKE_THESAURUS_STORAGE_PATH": str(data)}
    unsealed = read_only(data, env, READ_ONLY_INDEX)
    assert unsealed.returncode != 0 and "unable to open database file" in unsealed.stderr

    prepared = subprocess.run(
        [sys.executable, "-m", "eolake_thesaurus.prepare", str(shared_data / "thesauri")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert prepared.returncode == 0, prepared.stderr
    assert "filled; imported nothing (already filled)" in prepared.stdout
    assert read_only(data, env, READ_ONLY_INDEX).stdout.strip() == "4"  # gemet, inspire, eo, freedict
    served = read_only(data, env, READ_ONLY_SERVER)
    assert served.returncode == 0, served.stderr[-2000:]
    ready, status, found = json.loads(served.stdout.strip().splitlines()[-1])
    assert (ready, status) == (200, 200), found
    assert [r["uri"] for r in found["result"]] == [HYDROGRAPHY]


def test_a_filled_index_gets_what_a_newer_packaged_vocabulary_adds(tmp_path):
    from eolake_thesaurus.demo import EO_VOCABULARY, load_demo_vocabularies

    shipped = EO_VOCABULARY[0].read_text(encoding="utf-8")
    older = tmp_path / "eo-variables.ttl"
    older.write_text(shipped.split("# --- related concepts")[0], encoding="utf-8")  # a version without the links
    import_file(index_path(tmp_path), older, "eo")
    links = "SELECT count(*) FROM relations WHERE vocab = 'eo' AND rel = 'related'"
    assert sqlite3.connect(index_path(tmp_path)).execute(links).fetchone()[0] == 0
    (added,) = load_demo_vocabularies(tmp_path, tmp_path / "no-thesauri")
    assert added.vocabulary == "eo" and added.added["relations"] > 0 and added.added["concepts"] == 0
    assert sqlite3.connect(index_path(tmp_path)).execute(links).fetchone()[0] == added.added["relations"]
    assert load_demo_vocabularies(tmp_path, tmp_path / "no-thesauri") == []  # up to date: nothing written
