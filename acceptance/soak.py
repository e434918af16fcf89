#!/usr/bin/env python3
"""A soak: the steady read mix (steady_load.py) at a bounded rate for a long time, every platform process's memory
sampled meanwhile; it reports the error rate and how each process's memory moved.

    python acceptance/soak.py                                           # the local platform: 10 minutes at 5/s
    python acceptance/soak.py --base-url https://staging.example.org --prometheus https://prometheus.example.org
    python acceptance/soak.py --duration 45 --sample-every 5 --json soak.json

Memory (resident set size, RSS) comes from the local platform's processes (/proc: the supervisor and everything it
runs, PostgreSQL and its processes; their RSS less the shared memory they touched, which is PostgreSQL's buffer cache
and no one's growth) when the base URL is the local one (its state directory: $EOLAKE_STATE_DIR or ./.eolake), or
from a Prometheus that scrapes the platform (`process_resident_memory_bytes` of every target). A
process's growth is measured from the end of the warm-up (the first --warmup fraction of the run: caches fill,
pools open) to the end: its median RSS over the last sample window against its median over the first one after the
warm-up. Exit code 1 when the error rate is over --max-error-rate or a process grew more than --max-growth (and more
than --min-growth-mib, so a small process's few pages are not a leak).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import DEFAULT_BASE_URL, is_local, local_key, read_key, state_dir  # noqa: E402
from steady_load import Report, Route, _positive, discover_routes, print_summary, run_load  # noqa: E402

MIB = 2**20


class LocalProcesses:
    """The local embedded platform's processes, found afresh at every sample: the supervisor and its descendants
    (named after the service they run), PostgreSQL's postmaster and its processes."""

    def __init__(self, state: Path):
        from eolake.embedded.postgres import PostgresCluster  # the local platform's own: installed with it
        from eolake.embedded.state import StateDir

        self.state = StateDir(state)
        self.postmaster_file = PostgresCluster(self.state.postgres).data / "postmaster.pid"

    def sample(self) -> dict[str, int]:
        runtime = self.state.runtime()
        names = {str(child["pid"]): name for name, child in runtime["services"].items() if child.get("pid")}
        names[str(runtime["pid"])] = "supervisor"
        roots = [str(runtime["pid"])]
        postmaster = self._postmaster()
        if postmaster:
            names[postmaster] = "postgres"
            roots.append(postmaster)
        children = _children_by_parent()
        rss = {}
        for root in roots:
            for pid, label in _descendants(root, names[root], children, names):
                if (size := _rss(pid)) is not None:
                    rss[label] = size
        return rss

    def _postmaster(self) -> str | None:
        try:
            return self.postmaster_file.read_text().split()[0]
        except (OSError, IndexError):
            return None


def _children_by_parent() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        out.setdefault(fields[1], []).append(stat.parent.name)
    return out


def _descendants(root: str, name: str, children: dict[str, list[str]], names: dict[str, str]):
    """(pid, label) of `root` and every process under it: a known pid by its name, the others as
    `<nearest named ancestor>/<command>`, PostgreSQL's as `postgres/<its title>`."""
    yield root, name
    for child in children.get(root, []):
        label = names.get(child) or f"{name}/{_command(child)}"
        yield from _descendants(child, label, children, names)


def _command(pid: str) -> str:
    """A short, stable label: PostgreSQL's process title ("checkpointer", "eolake_app eolake 127.0.0.1"), else the
    program's module or name."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return pid
    if words[0].startswith("postgres:"):  # "postgres: checkpointer", "postgres: USER DB HOST(PORT) STATE"
        title = words[0].removeprefix("postgres:").split()
        serves_a_client = len(title) >= 3 and ("(" in title[2] or title[2] == "[local]")
        return f"backend {pid}" if serves_a_client else " ".join(title[:2]).removesuffix(" last")
    if "-m" in words[:-1]:
        return words[words.index("-m") + 1]
    return Path(words[0]).name + f" {pid}"


def _rss(pid: str) -> int | None:
    """Resident bytes of its own: RSS less resident shared memory."""
    try:
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        kib = int(status["VmRSS"].split()[0]) - int(status.get("RssShmem", "0 kB").split()[0])
    except (OSError, KeyError, IndexError, ValueError):
        return None  # ended meanwhile, or a kernel thread
    return kib * 1024


class PrometheusProcesses:
    """Every process a Prometheus scrapes: `process_resident_memory_bytes` by job and instance."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def sample(self) -> dict[str, int]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": "process_resident_memory_bytes"}, timeout=10)
        answer.raise_for_status()
        return {
            f"{r['metric'].get('job', '?')}@{r['metric'].get('instance', '?')}": int(float(r["value"][1]))
            for r in answer.json()["data"]["result"]
        }


@dataclass
class MemoryTrace:
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)  # (seconds since start, RSS by name)
    errors: list[str] = field(default_factory=list)

    def growth(self, warmup: float, window: int = 3) -> dict[str, dict]:
        """By process seen from the end of the warm-up to the end: RSS (MiB) then and at the end, the largest, and
        the growth (median of the first `window` samples after the warm-up against the median of the last)."""
        steady = [rss for at, rss in self.samples if at >= warmup]
        if len(steady) < 2:
            return {}
        window = max(1, min(window, len(steady) // 2))
        first, last = steady[:window], steady[-window:]
        names = set.intersection(*(set(rss) for rss in first + last))
        out = {}
        for name in sorted(names):
            before = statistics.median(rss[name] for rss in first)
            after = statistics.median(rss[name] for rss in last)
            out[name] = {
                "after_warmup_mib": round(before / MIB, 1),
                "end_mib": round(after / MIB, 1),
                "max_mib": round(max(rss.get(name, 0) for _, rss in self.samples) / MIB, 1),
                "growth_mib": round((after - before) / MIB, 1),
                "growth": round((after - before) / before, 4) if before else 0.0,
            }
        return out


async def sample_memory(source, every: float, stop: asyncio.Event, trace: MemoryTrace) -> None:
    began = time.monotonic()
    while not stop.is_set():
        try:
            trace.samples.append((time.monotonic() - began, await asyncio.to_thread(source.sample)))
        except (OSError, ValueError, KeyError, httpx.HTTPError) as exc:
            trace.errors.append(f"{time.monotonic() - began:.0f} s: {type(exc).__name__}: {exc}")
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass


async def soak(
    base_url: str,
    routes: list[Route],
    source,
    *,
    rate: float,
    duration: float,
    every: float,
    headers: dict[str, str],
    timeout: float = 30.0,
) -> tuple[Report, MemoryTrace]:
    """The load for `duration` seconds, memory sampled every `every` seconds from `source` meanwhile (and once
    after)."""
    trace, stop = MemoryTrace(), asyncio.Event()
    sampler = asyncio.create_task(sample_memory(source, every, stop, trace))
    try:
        report = await run_load(base_url, routes, rate=rate, duration=duration, timeout=timeout, headers=headers)
    finally:
        stop.set()
        await sampler
    return report, trace


def verdict(
    summary: dict, growth: dict[str, dict], max_error_rate: float, max_growth: float, min_growth_mib: float
) -> list[str]:
    """What failed the soak, in words; empty when it passed."""
    failed = []
    if summary["error_rate"] > max_error_rate:
        failed.append(f"error rate {summary['error_rate']:.3%} is over {max_error_rate:.3%}")
    for name, g in growth.items():
        if g["growth"] > max_growth and g["growth_mib"] > min_growth_mib:
            failed.append(f"{name} grew {g['growth']:.1%} ({g['growth_mib']} MiB) after the warm-up")
    return failed


def print_memory(growth: dict[str, dict], trace: MemoryTrace) -> None:
    print(f"memory: {len(trace.samples)} samples of {len(growth)} processes")
    print(f"{'process':<44}{'after warm-up':>14}{'end':>8}{'max':>8}{'growth':>9}  MiB")
    for name, g in growth.items():
        print(f"{name[:43]:<44}{g['after_warmup_mib']:>14}{g['end_mib']:>8}{g['max_mib']:>8}{g['growth']:>9.1%}")
    for error in trace.errors[:5]:
        print(f"memory sample failed: {error}")


def memory_source(args: argparse.Namespace, base: str):
    if args.prometheus:
        return PrometheusProcesses(args.prometheus)
    if is_local(base):
        return LocalProcesses(args.state_dir or state_dir())
    raise SystemExit("soak: memory of a remote platform comes from its Prometheus: pass --prometheus URL")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default=DEFAULT_BASE_URL)
    p.add_argument("--rate", type=_positive, default=5.0, help="requests a second (default 5)")
    p.add_argument("--duration", type=_positive, default=600.0, help="seconds (default 600)")
    p.add_argument("--sample-every", type=_positive, default=10.0, help="seconds between memory samples (10)")
    p.add_argument("--warmup", type=float, default=0.2, help="fraction of the run before growth counts (0.2)")
    p.add_argument("--state-dir", type=Path, help="the local platform's state directory (default as acceptance)")
    p.add_argument("--prometheus", help="a Prometheus scraping the platform: memory from it")
    p.add_argument("--user-key-file", type=Path, help="a user's API key: the downloads' order list joins the mix")
    p.add_argument("--max-error-rate", type=float, default=0.001, help="exit 1 above it (default 0.001)")
    p.add_argument("--max-growth", type=float, default=0.25, help="exit 1 when a process grew more (0.25)")
    p.add_argument("--min-growth-mib", type=float, default=16.0, help="growth under this many MiB is noise (16)")
    p.add_argument("--json", type=Path, help="also write the figures and the memory samples there")
    args = p.parse_args(argv)
    if not 0 <= args.warmup < 1:
        p.error(f"--warmup is a fraction of the run, from 0 to under 1, not {args.warmup}")
    base = args.base_url.rstrip("/")
    source = memory_source(args, base)
    key = read_key(args.user_key_file) or (local_key("user", base) if is_local(base) else "")
    headers = {"X-API-Key": key} if key else {}
    try:
        with httpx.Client(base_url=base, timeout=30, headers=headers) as client:
            routes = discover_routes(client, key)
    except httpx.HTTPError as exc:
        print(f"soak: {base} does not answer as an eolake platform: {exc}", file=sys.stderr)
        return 2
    report, trace = asyncio.run(
        soak(base, routes, source, rate=args.rate, duration=args.duration, every=args.sample_every, headers=headers)
    )
    summary, growth = report.summary(), trace.growth(args.warmup * args.duration)
    print_summary(summary)
    print_memory(growth, trace)
    failed = verdict(summary, growth, args.max_error_rate, args.max_growth, args.min_growth_mib)
    print("soak passed" if not failed else "soak failed: " + "; ".join(failed))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "load": summary,
                    "memory": growth,
                    "memory_samples": trace.samples,
                    "memory_errors": trace.errors,
                    "failed": failed,
                }
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
