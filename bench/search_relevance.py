"""Dataset search relevance: eolake's federated collection search vs EODAG's guess_collection vs stock pgstac.

A measurement, not a test: nothing is asserted. The judged queries (bench/search_judgments.yaml) run against:

- eolake: `GET {--eolake}/search/collections?q=...&limit=10` (a running platform's gateway; skipped without it);
- eolake-app: the same request to the search service's app in this process (`create_app` with the local stack's
  providers, called through ASGI on this thread's event loop: no gateway, no socket to the search service), its
  catalog and thesaurus reached through --eolake; the in-process latency of a search with its thesaurus lookup;
- eodag: `EODataAccessGateway().guess_collection(free_text=q)` in-process (EODAG 4's own dataset search);
- pgstac: stock stac-fastapi-pgstac (`uvicorn stac_fastapi.pgstac.app:create_app --factory`, every setting its
  default) over a private PostgreSQL+pgstac cluster holding the same corpus as STAC collections,
  `GET /collections?q=...&limit=10` (its collection-search free text).

Queries run in a shuffled order (fixed seed), the targets interleaved per query, in a rotating order; the HTTP
targets share one client. Per target, language and split: nDCG@10, recall@10, MRR@10, zero-result rate,
errors, p50/p95 latency over every round, and the p95 of the first round alone (every query new to the services).
`--self-check` validates the judgments file and exits.

Usage: python bench/search_relevance.py [--eolake URL] [--targets eolake,eodag,pgstac] [--repeat 3]
       [--split dev|holdout|all] [--json results/search_relevance.json] [--self-check]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
from catalog import cpu_model, load_average, start_server  # noqa: E402
from search_corpus import load_corpus, stac_collection  # noqa: E402

JUDGMENTS = BENCH / "search_judgments.yaml"
K = 10
TARGETS = ("eolake", "eolake-app", "eodag", "pgstac")
NEEDS_PLATFORM = ("eolake", "eolake-app")
MIN_QUERIES = 48


# --- judgments ---------------------------------------------------------------------------------------


def split_of(q: str) -> str:
    """The fixed rule that puts a query in the holdout split (about a third), whoever wrote it."""
    return "holdout" if hashlib.sha256(q.encode()).digest()[0] % 3 == 0 else "dev"


def load_judgments(path: Path = JUDGMENTS) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("queries"), list)
        or not all(isinstance(q, dict) for q in data["queries"])
    ):
        raise ValueError(f"{path}: expected a mapping with a list of queries under 'queries'")
    return data["queries"]


def problems(queries: list[dict], corpus_ids: set[str]) -> list[str]:
    """Everything wrong with a judgments list; empty when it is well-formed."""
    out = []
    if len(queries) < MIN_QUERIES:
        out.append(f"{len(queries)} queries, at least {MIN_QUERIES} wanted")
    if sum(q.get("lang") == "fr" for q in queries) * 2 < len(queries):
        out.append("fewer than half of the queries are French")
    if {q.get("split") for q in queries} != {"dev", "holdout"}:
        out.append("both splits (dev, holdout) must be present")
    seen = set()
    for i, q in enumerate(queries):
        text = q.get("q")
        where = f"query {i} ({text!r})"
        if not isinstance(text, str) or not text.strip():
            out.append(f"{where}: no query text")
            continue
        if text in seen:
            out.append(f"{where}: duplicate query")
        seen.add(text)
        if q.get("lang") not in ("en", "fr"):
            out.append(f"{where}: lang must be en or fr")
        if q.get("split") != split_of(text):
            out.append(f"{where}: split must be {split_of(text)} (sha256 rule), not {q.get('split')}")
        judged = q.get("judgments") or []
        if not judged:
            out.append(f"{where}: no judgments")
        ids = [j.get("id") for j in judged]
        if len(ids) != len(set(ids)):
            out.append(f"{where}: a collection is judged twice")
        for j in judged:
            if j.get("id") not in corpus_ids:
                out.append(f"{where}: {j.get('id')!r} is not in the corpus")
            if j.get("grade") not in (1, 2):
                out.append(f"{where}: {j.get('id')}: grade must be 1 or 2")
            if not str(j.get("why") or "").strip():
                out.append(f"{where}: {j.get('id')}: no reason")
    return out


# --- metrics -----------------------------------------------------------------------------------------


def dcg(gains: Iterable[int]) -> float:
    return sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(gains))


def ndcg_at_k(ranked: Sequence[str], grades: dict[str, int], k: int = K) -> float:
    ideal = dcg(sorted(grades.values(), reverse=True)[:k])
    return dcg(grades.get(i, 0) for i in ranked[:k]) / ideal if ideal else 0.0


def recall_at_k(ranked: Sequence[str], grades: dict[str, int], k: int = K) -> float:
    """Relevant (grade >= 1) found in the first k over min(k, relevant): 1.0 is reachable by a perfect ranking."""
    relevant = {i for i, g in grades.items() if g > 0}
    return len(relevant.intersection(ranked[:k])) / min(k, len(relevant)) if relevant else 0.0


def reciprocal_rank(ranked: Sequence[str], grades: dict[str, int], k: int = K) -> float:
    return next((1 / (n + 1) for n, i in enumerate(ranked[:k]) if grades.get(i, 0) > 0), 0.0)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def canonical(ids: Iterable[str], corpus_ids: set[str]) -> list[str]:
    """Answer ids as corpus ids (a federated id may carry a provider prefix, `eodag:S2_MSI_L2A`), first
    occurrence kept."""
    out: list[str] = []
    for raw in ids:
        cid = raw if raw in corpus_ids else raw.replace("/", ":").rsplit(":", 1)[-1]
        if cid not in out:
            out.append(cid)
    return out


# --- targets -----------------------------------------------------------------------------------------


@dataclass
class Answer:
    ids: list[str]
    ms: float
    error: str | None = None


def http_search(client: httpx.Client, url: str) -> Callable[[str], list[str]]:
    def search(q: str) -> list[str]:
        try:
            r = client.get(url, params={"q": q, "limit": K})
        except (httpx.ReadError, httpx.RemoteProtocolError):  # a kept-alive connection the server had closed
            r = client.get(url, params={"q": q, "limit": K})
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:120]}")
        return [c.get("id") for c in r.json().get("collections", [])]

    return search


def search_app(stack: contextlib.ExitStack, platform: str, workdir: Path) -> Callable[[str], list[str]]:
    """The search service's app in this process, configured as the local stack configures it (its providers and
    priorities), reaching the running platform's catalog and thesaurus through its public URL; no rate limit. It
    runs on an event loop of this thread, called through ASGI: no socket, no thread between the bench and it."""
    from eolake_search.app import create_app
    from eolake_search.settings import SearchSettings

    from eolake_spec import load_stack

    env = load_stack("local").service_env("search")
    settings = SearchSettings(
        public_url=platform.rstrip("/"),
        root_path="/search",
        storage_path=workdir / "search",
        providers=json.loads(env["EOLAKE_SEARCH_PROVIDERS"]),
        priorities=json.loads(env.get("EOLAKE_SEARCH_PRIORITIES") or "{}"),
    )
    app = create_app(settings)
    loop = asyncio.new_event_loop()
    stack.callback(loop.close)
    lifespan = app.router.lifespan_context(app)
    loop.run_until_complete(lifespan.__aenter__())
    stack.callback(lambda: loop.run_until_complete(lifespan.__aexit__(None, None, None)))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=platform.rstrip("/"))
    stack.callback(lambda: loop.run_until_complete(client.aclose()))

    def search(q: str) -> list[str]:
        r = loop.run_until_complete(client.get("/search/collections", params={"q": q, "limit": K}))
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:120]}")
        return [c.get("id") for c in r.json().get("collections", [])]

    return search


def eodag_gateway(workdir: Path):
    os.environ.setdefault("EODAG_CFG_DIR", str(workdir / "eodag"))  # not the user's ~/.config/eodag
    from eodag import EODataAccessGateway

    return EODataAccessGateway()


def eodag_search(dag) -> Callable[[str], list[str]]:
    from eodag.utils.exceptions import NoMatchingCollection

    def search(q: str) -> list[str]:
        try:
            return [c.id for c in dag.guess_collection(free_text=q)]
        except NoMatchingCollection:
            return []

    return search


def eodag_reachable(dag) -> set[str]:
    """The collections guess_collection can answer: those with a provider configured in this EODAG."""
    return {c.id for c in dag.list_collections(fetch_providers=False)}


def timed_answer(search: Callable[[str], list[str]], q: str) -> Answer:
    start = time.perf_counter()
    try:
        ids = search(q)
        return Answer(ids, (time.perf_counter() - start) * 1000)
    except Exception as exc:  # a failing answer is a figure (errors, zero results), not a crash
        return Answer([], (time.perf_counter() - start) * 1000, f"{type(exc).__name__}: {exc}"[:200])


@contextlib.contextmanager
def stock_pgstac(stack: contextlib.ExitStack, workdir: Path):
    """Stock stac-fastapi-pgstac over a private cluster holding the corpus as STAC collections."""
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    from servers import free_port, private_cluster

    cluster = stack.enter_context(private_cluster("eolake-bench-search-"))
    dsn = cluster.dsn()
    with PgstacDB(dsn=dsn) as db:
        Loader(db).load_collections(iter([stac_collection(d) for d in load_corpus()]), insert_mode=Methods.upsert)
    parts = urlsplit(dsn)
    port = free_port()
    server = start_server(
        stack,
        "stock stac-fastapi-pgstac",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "stac_fastapi.pgstac.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        {
            "PGUSER": unquote(parts.username),
            "PGPASSWORD": unquote(parts.password),
            "PGHOST": parts.hostname,
            "PGPORT": str(parts.port),
            "PGDATABASE": parts.path.strip("/"),
        },
        port,
        "/",
        workdir,
    )
    yield server.url


# --- the run -----------------------------------------------------------------------------------------


@dataclass
class QueryResult:
    q: str
    lang: str
    split: str
    ids: list[str]
    ndcg: float
    recall: float
    rr: float
    error: str | None
    ms: list[float] = field(default_factory=list)


def run_queries(
    queries: list[dict],
    searches: dict[str, Callable[[str], list[str]]],
    repeat: int,
    corpus_ids: set[str],
    seed: int = 13,
) -> dict[str, list[QueryResult]]:
    order = list(range(len(queries)))
    random.Random(seed).shuffle(order)
    names = list(searches)
    results: dict[str, dict[int, QueryResult]] = {n: {} for n in names}
    for round_ in range(repeat):
        for turn, i in enumerate(order):
            query = queries[i]
            grades = {j["id"]: j["grade"] for j in query["judgments"]}
            shift = (turn + round_) % len(names)
            for name in names[shift:] + names[:shift]:
                answer = timed_answer(searches[name], query["q"])
                if i not in results[name]:  # relevance from the first round; latency from every round
                    ids = canonical(answer.ids, corpus_ids)
                    results[name][i] = QueryResult(
                        query["q"],
                        query["lang"],
                        query["split"],
                        ids[:K],
                        ndcg_at_k(ids, grades),
                        recall_at_k(ids, grades),
                        reciprocal_rank(ids, grades),
                        answer.error,
                    )
                results[name][i].ms.append(answer.ms)
    return {n: [r[i] for i in range(len(queries))] for n, r in results.items()}


def rescored(rows: list[QueryResult], queries: list[dict], keep: set[str]) -> list[QueryResult]:
    """The rows judged only on the collections in `keep`; queries left without a judgment are dropped."""
    out = []
    for row, query in zip(rows, queries, strict=True):
        grades = {j["id"]: j["grade"] for j in query["judgments"] if j["id"] in keep}
        if grades:
            out.append(
                QueryResult(
                    row.q,
                    row.lang,
                    row.split,
                    row.ids,
                    ndcg_at_k(row.ids, grades),
                    recall_at_k(row.ids, grades),
                    reciprocal_rank(row.ids, grades),
                    row.error,
                    row.ms,
                )
            )
    return out


def summary(rows: list[QueryResult]) -> dict:
    ms = [m for r in rows for m in r.ms]
    return {
        "queries": len(rows),
        "ndcg@10": round(statistics.fmean(r.ndcg for r in rows), 3),
        "recall@10": round(statistics.fmean(r.recall for r in rows), 3),
        "mrr@10": round(statistics.fmean(r.rr for r in rows), 3),
        "zero_result_rate": round(sum(not r.ids for r in rows) / len(rows), 3),
        "errors": sum(r.error is not None for r in rows),
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        # the first round alone: every query new to the services (nothing reused, the thesaurus asked)
        "p95_first_ms": round(percentile([r.ms[0] for r in rows if r.ms], 95), 1),
    }


def groups(rows: list[QueryResult]) -> dict[str, list[QueryResult]]:
    out = {"all": rows}
    for key in ("lang", "split"):
        for value in sorted({getattr(r, key) for r in rows}):
            out[f"{key}={value}"] = [r for r in rows if getattr(r, key) == value]
    for lang, split in sorted({(r.lang, r.split) for r in rows}):  # does each language generalise?
        out[f"{lang}/{split}"] = [r for r in rows if r.lang == lang and r.split == split]
    return out


def print_table(figures: dict[str, dict[str, dict]]) -> None:
    head = (
        f"{'target':10} {'slice':14} {'n':>3} {'nDCG@10':>8} {'R@10':>6} {'MRR':>6} {'zero':>6} {'err':>4} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p95 1st':>8}"
    )
    print(head)
    print("-" * len(head))
    for target, slices in figures.items():
        for name, s in slices.items():
            print(
                f"{target:10} {name:14} {s['queries']:>3} {s['ndcg@10']:>8.3f} {s['recall@10']:>6.3f} "
                f"{s['mrr@10']:>6.3f} {s['zero_result_rate']:>6.2f} {s['errors']:>4} {s['p50_ms']:>8.1f} "
                f"{s['p95_ms']:>8.1f} {s['p95_first_ms']:>8.1f}"
            )


def print_per_query(results: dict[str, list[QueryResult]]) -> None:
    names = list(results)
    print(f"{'query':40} {'lang':4} {'split':7} " + " ".join(f"{n:>8}" for n in names) + "   (nDCG@10)")
    for i, row in enumerate(next(iter(results.values()))):
        if row.split != "dev":  # the holdout is for checking, not for looking at query by query
            continue
        cells = " ".join(f"{results[n][i].ndcg:>8.3f}" for n in names)
        print(f"{row.q[:40]:40} {row.lang:4} {row.split:7} {cells}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--eolake", help="base URL of a running eolake gateway (target skipped without it)")
    p.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated subset of {','.join(TARGETS)}")
    p.add_argument("--repeat", type=int, default=3, help="rounds over the queries (latency samples), default 3")
    p.add_argument("--split", choices=("all", "dev", "holdout"), default="all")
    p.add_argument("--judgments", type=Path, default=JUDGMENTS)
    p.add_argument(
        "--per-query", action="store_true", help="also print each dev query's nDCG@10 per target (never the holdout's)"
    )
    p.add_argument("--json", type=Path, help="also write every figure and per-query answer as JSON")
    p.add_argument("--self-check", action="store_true", help="validate the judgments file and exit")
    args = p.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if unknown := set(args.targets) - set(TARGETS):
        p.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def read_judgments(args: argparse.Namespace, corpus_ids: set[str]) -> list[dict] | None:
    """The judged queries of the split asked for, or None (said on stderr) when the file is not well-formed."""
    try:
        queries = load_judgments(args.judgments)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"cannot read the judgments: {exc}".splitlines()[0], file=sys.stderr)
        return None
    if found := problems(queries, corpus_ids):
        print("judgments file is not well-formed:\n  " + "\n  ".join(found), file=sys.stderr)
        return None
    return queries


def start_targets(
    args: argparse.Namespace, stack: contextlib.ExitStack, work: Path
) -> tuple[dict[str, Callable[[str], list[str]]], set[str] | None]:
    """Each target's search, started in `work` and stopped with `stack`; and the collections EODAG can reach."""
    targets = [t for t in args.targets if t not in NEEDS_PLATFORM or args.eolake]
    for skipped in sorted(set(args.targets) - set(targets)):
        print(f"{skipped}: skipped (no --eolake URL)")
    client = stack.enter_context(httpx.Client(timeout=30))
    searches: dict[str, Callable[[str], list[str]]] = {}
    reachable = None
    for target in targets:
        print(f"starting {target}…", flush=True)
        if target == "eolake":
            searches[target] = http_search(client, args.eolake.rstrip("/") + "/search/collections")
        elif target == "eolake-app":
            searches[target] = search_app(stack, args.eolake, work)
        elif target == "eodag":
            dag = eodag_gateway(work)
            searches[target] = eodag_search(dag)
            reachable = eodag_reachable(dag)
        else:
            url = stack.enter_context(stock_pgstac(stack, work))
            searches[target] = http_search(client, url + "/collections")
    return searches, reachable


def print_errors(results: dict[str, list[QueryResult]]) -> None:
    for target, rows in results.items():
        failed = [r for r in rows if r.error]
        for r in failed[:5]:
            print(f"{target} error: {r.q!r}: {r.error}")
        if len(failed) > 5:
            print(f"{target}: {len(failed) - 5} more errors (--json has them all)")


def print_ratios(figures: dict) -> None:
    ratios = [
        f"{t}/pgstac nDCG@10 = {figures[t]['all']['ndcg@10'] / figures['pgstac']['all']['ndcg@10']:.2f}"
        for t in figures
        if t != "pgstac" and "pgstac" in figures and figures["pgstac"]["all"]["ndcg@10"]
    ]
    if ratios:
        print("ratios: " + "; ".join(ratios))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "bench/search_relevance.py", *(sys.argv[1:] if argv is None else argv)])
    print(f"$ {command}", flush=True)
    corpus_ids = {d.id for d in load_corpus()}
    queries = read_judgments(args, corpus_ids)
    if queries is None:
        return 1
    if args.self_check:
        print(
            f"{len(queries)} queries, {sum(len(q['judgments']) for q in queries)} judgments over "
            f"{len(corpus_ids)} collections: well-formed"
        )
        return 0
    if args.split != "all":
        queries = [q for q in queries if q["split"] == args.split]
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="eolake-bench-search-") as work:
        searches, reachable = start_targets(args, stack, Path(work))
        for name, search in searches.items():  # warm-up, untimed; a target that cannot answer it is not measured
            if (error := timed_answer(search, "warm up").error) is not None:
                print(f"{name} does not answer: {error}", file=sys.stderr)
                return 1
        load_before = load_average()
        start = time.perf_counter()
        results = run_queries(queries, searches, args.repeat, corpus_ids)
        elapsed = time.perf_counter() - start
    figures = {t: {name: summary(rows) for name, rows in groups(r).items()} for t, r in results.items()}
    if reachable is not None:  # EODAG only guesses collections it has a provider for: the same, judged on those
        figures["eodag"]["reachable"] = summary(rescored(results["eodag"], queries, reachable))
    print()
    print(f"$ {command}")
    print(
        f"{len(queries)} queries ({args.split}), {len(corpus_ids)} collections, {args.repeat} rounds, "
        f"{elapsed:.0f} s; CPU {cpu_model()}, {os.cpu_count()} cores; load average before {load_before}, "
        f"after {load_average()}"
    )
    if args.per_query:
        print_per_query(results)
    print_table(figures)
    print_errors(results)
    print_ratios(figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "command": command,
                    "load_average_before": load_before,
                    "figures": figures,
                    "queries": {t: [r.__dict__ for r in rows] for t, rows in results.items()},
                },
                indent=1,
                ensure_ascii=False,
            )
        )
        print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
