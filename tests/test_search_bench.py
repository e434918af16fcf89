"""The dataset-search benchmark's data and metrics (bench/search_relevance.py): the judgments file is well-formed
over the corpus, a malformed one is caught, and the metrics give the hand-computed values on tiny cases."""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import pytest
from stac_pydantic import Collection

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import search_relevance as bench  # noqa: E402
from search_corpus import EODAG_SOURCE, load_corpus, stac_collection  # noqa: E402

DEMO_IDS = {"landsat-c2-l2", "sentinel-2-l2a", "naip", "garonne-wse", "garonne-virtual-stations"}


@pytest.fixture(scope="module")
def corpus_ids() -> set[str]:
    return {d.id for d in load_corpus()}


@pytest.fixture(scope="module")
def queries() -> list[dict]:
    return bench.load_judgments()


def test_corpus_is_eodag_collections_plus_the_demo_ones(corpus_ids):
    assert DEMO_IDS <= corpus_ids
    assert {"S2_MSI_L2A", "S1_SAR_GRD", "CAMS_EU_AIR_QUALITY_FORECAST"} <= corpus_ids
    assert "GENERIC_COLLECTION" not in corpus_ids
    assert len(corpus_ids) > 400


def test_every_eodag_document_is_a_valid_stac_collection():
    # (the demo collections are STAC already; the real NAIP one has sub-boxes outside its overall box)
    for doc in (d for d in load_corpus() if d.source == EODAG_SOURCE):
        col = Collection(**stac_collection(doc))
        assert (col.id, col.title) == (doc.id, doc.title)


def test_judgments_file_is_well_formed(queries, corpus_ids):
    assert bench.problems(queries, corpus_ids) == []
    assert len(queries) >= 48
    assert sum(q["lang"] == "fr" for q in queries) * 2 >= len(queries)
    holdout = sum(q["split"] == "holdout" for q in queries) / len(queries)
    assert 0.2 < holdout < 0.45


@pytest.mark.parametrize(
    "fault, expected",
    [
        (
            lambda qs: qs[0]["judgments"].append({"id": "NO_SUCH_COLLECTION", "grade": 2, "why": "x"}),
            "not in the corpus",
        ),
        (lambda qs: qs[0]["judgments"][0].update(grade=3), "grade must be 1 or 2"),
        (lambda qs: qs[0]["judgments"][0].update(why=" "), "no reason"),
        (lambda qs: qs[0].update(split="holdout" if qs[0]["split"] == "dev" else "dev"), "sha256 rule"),
        (lambda qs: qs[0].update(lang="de"), "lang must be en or fr"),
        (lambda qs: qs.append(copy.deepcopy(qs[0])), "duplicate query"),
        (lambda qs: qs[0]["judgments"].append(dict(qs[0]["judgments"][0])), "judged twice"),
        (lambda qs: qs.__delitem__(slice(40, None)), "at least 48 wanted"),
        (lambda qs: [q.update(lang="en") for q in qs[:40]], "half of the queries are French"),
    ],
)
def test_malformed_judgments_are_reported(queries, corpus_ids, fault, expected):
    broken = copy.deepcopy(queries)
    fault(broken)
    found = bench.problems(broken, corpus_ids)
    assert any(expected in p for p in found), found


def test_ndcg_on_hand_made_cases():
    grades = {"a": 2, "b": 1}
    assert bench.ndcg_at_k(["a", "b", "x"], grades) == 1.0
    # ranked b, a: DCG = 1/log2(2) + 3/log2(3); ideal = 3/log2(2) + 1/log2(3)
    expected = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert bench.ndcg_at_k(["b", "a"], grades) == pytest.approx(expected)
    assert bench.ndcg_at_k([], grades) == 0.0
    assert bench.ndcg_at_k(["x"] * 10 + ["a"], grades) == 0.0  # beyond k counts for nothing


def test_recall_is_capped_at_k_and_mrr_is_the_first_relevant_rank():
    assert bench.recall_at_k(["a", "x", "y"], {"a": 2, "b": 1, "c": 1}) == pytest.approx(1 / 3)
    many = {f"r{i}": 1 for i in range(12)}
    assert bench.recall_at_k([f"r{i}" for i in range(10)], many) == 1.0
    assert bench.reciprocal_rank(["x", "y", "b"], {"b": 1}) == pytest.approx(1 / 3)
    assert bench.reciprocal_rank(["x", "y"], {"b": 1}) == 0.0


def test_answer_ids_are_mapped_to_corpus_ids():
    corpus = {"S2_MSI_L2A", "naip"}
    assert bench.canonical(["eodag:S2_MSI_L2A", "naip", "S2_MSI_L2A", "other"], corpus) == [
        "S2_MSI_L2A",
        "naip",
        "other",
    ]


def test_split_rule_is_fixed():
    assert bench.split_of("sécheresse") == bench.split_of("sécheresse")
    assert {bench.split_of(f"q{i}") for i in range(30)} == {"dev", "holdout"}


@pytest.mark.parametrize("text", ["[1, 2]\n", "queries: 3\n", "queries: [1]\n"])
def test_a_judgments_file_of_the_wrong_shape_is_refused(tmp_path, text):
    path = tmp_path / "judgments.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="list of queries"):
        bench.load_judgments(path)
