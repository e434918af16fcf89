"""Start-up: how long `./eolake up` takes to all ready, cold (first start: demo data loaded) and warm (again).

A measurement, not a test. A private state directory (a temp dir, removed at the end, or --state-dir), a free port;
`./eolake up --port P` then `./eolake down`, --runs times: the first run is cold when the state directory is new,
the others warm. The time is the wall time of the `up` command (it returns when every component answers its
readiness probe), bootstrap included. After each run, the supervisor's log gives the phases (from the supervisor's
first line to each phase's line); while `up` runs, each component listed in runtime.json is probed every 0.1 s, which
gives when each became ready; when `up` returns, each component's CPU-seconds so far (its process and what it
started, from /proc): on a machine shared with other work they say what the start costs, which the wall time does
not. The load average is recorded with every run.

Usage: python bench/startup.py [--runs 4] [--state-dir DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from catalog import console, cpu_model, load_average
from rich.table import Table

from eolake.embedded.postgres import free_port

REPO = Path(__file__).resolve().parent.parent


def eolake(*args: str, state: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EOLAKE_STATE_DIR": str(state)}
    return subprocess.run([str(REPO / "eolake"), *args], env=env, capture_output=True, text=True)


def phases(log: Path, since: int) -> dict[str, float]:
    """Seconds from the supervisor's first line (of this start: the log from byte `since`) to each phase line."""
    stamps: dict[str, float] = {}
    first = None
    with log.open("rb") as f:
        f.seek(since)
        for raw in f:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                at = datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()
                first = first if first is not None else at
                if line.get("phase"):
                    stamps.setdefault(line["phase"], round(at - first, 2))
    return stamps


def watch_ready(state: Path, up: subprocess.Popen, started: float) -> dict[str, float]:
    """While `up` runs: when each component (as runtime.json lists them) first answered its readiness probe."""
    ready: dict[str, float] = {}
    runtime = state / "runtime.json"
    with httpx.Client(timeout=1) as client:
        while up.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                components = json.loads(runtime.read_text())
                probes = {n: c["upstream"] + c["probe"] for n, c in components.get("services", {}).items()}
                probes |= {
                    n: c["url"] + c["probe"] for n, c in components.get("monitoring", {}).items() if c.get("url")
                }
                for name, url in probes.items():
                    if name not in ready:
                        with contextlib.suppress(httpx.HTTPError):
                            if client.get(url).status_code == 200:
                                ready[name] = round(time.perf_counter() - started, 2)
            time.sleep(0.1)
    return ready


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its descendants (those alive, and those it waited for)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    own = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime, stime, cutime, cstime
    return own + sum(cpu_seconds(child) for child in children)


def spent(state: Path) -> dict[str, float]:
    """CPU-seconds of each component runtime.json lists, and of the supervisor itself (its own share)."""
    runtime = json.loads((state / "runtime.json").read_text())
    components = {name: round(cpu_seconds(c["pid"]), 2) for name, c in runtime["services"].items() if c["pid"]}
    components["supervisor"] = round(cpu_seconds(runtime["pid"]) - sum(components.values()), 2)
    return components


def run_once(state: Path, port: int) -> dict:
    log = state / "logs" / "supervisor.log"
    since = log.stat().st_size if log.exists() else 0
    cold = not (state / "demo-loaded").exists()
    before = load_average()
    started = time.perf_counter()
    env = {**os.environ, "EOLAKE_STATE_DIR": str(state)}
    with subprocess.Popen(
        [str(REPO / "eolake"), "up", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as up:
        ready = watch_ready(state, up, started)
        seconds = time.perf_counter() - started
        output = up.stdout.read().decode(errors="replace")
    if up.returncode:
        raise RuntimeError(f"eolake up failed ({up.returncode}): {output[-2000:]}")
    cpu = spent(state)
    down = eolake("down", state=state)
    if down.returncode:
        raise RuntimeError(f"eolake down failed ({down.returncode}): {down.stderr[-2000:]}")
    return {
        "cold": cold,
        "seconds": seconds,
        "load_average": before,
        "phases": phases(log, since),
        "ready": ready,
        "cpu_seconds": cpu,
    }


def report(runs: list[dict]) -> None:
    table = Table(title="`eolake up` to all ready (s)")
    for column in ("run", "kind", "seconds", "load average", "phases (s since the supervisor's first line)"):
        table.add_column(column)
    for n, run in enumerate(runs, start=1):
        shown = ", ".join(f"{name} {at}" for name, at in run["phases"].items())
        kind = "cold" if run["cold"] else "warm"
        table.add_row(str(n), kind, f"{run['seconds']:.1f}", run["load_average"], shown)
        console.print(
            f"  run {n} components ready at (s after `up`): "
            + ", ".join(f"{name} {at}" for name, at in sorted(run["ready"].items(), key=lambda kv: kv[1]))
        )
        cpu = run["cpu_seconds"]
        console.print(
            f"  run {n} CPU-seconds when `up` returned: {sum(cpu.values()):.1f} in all: "
            + ", ".join(f"{name} {s}" for name, s in sorted(cpu.items(), key=lambda kv: -kv[1]))
        )
    console.print(table)
    warm = [r["seconds"] for r in runs if not r["cold"]]
    if warm:
        console.print(f"warm: median {statistics.median(warm):.1f} s, min {min(warm):.1f} s over {len(warm)} runs")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=4, help="up/down cycles (the first is cold in a new state dir)")
    parser.add_argument("--state-dir", type=Path, help="an existing state directory (kept); default: a temp one")
    parser.add_argument("--json", type=Path)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    command = shlex.join(["python", "bench/startup.py", *sys.argv[1:]])
    console.rule("eolake start-up benchmark")
    console.print(f"command: {command}\nmachine: {os.cpu_count()} cores, {cpu_model()}")
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="eolake-bench-startup-", dir="/tmp"))
    state.chmod(0o755)
    port = free_port()
    runs = []
    try:
        for n in range(args.runs):
            runs.append(run_once(state, port))
            console.print(
                f"  run {n + 1}/{args.runs} {'cold' if runs[-1]['cold'] else 'warm'} {runs[-1]['seconds']:.1f} s "
                f"(load average {runs[-1]['load_average']})"
            )
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    finally:
        eolake("down", state=state)
        if not args.state_dir:
            shutil.rmtree(state, ignore_errors=True)
    report(runs)
    console.print(f"command: {command}\nload average after: {load_average()}")
    if args.json:
        args.json.write_text(json.dumps({"command": command, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
