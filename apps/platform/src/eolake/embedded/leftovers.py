"""The supervisor's children as recorded on disk, and those left running after it: cheap to import, since `eolake
status` and `eolake down` read them on every call (no web framework, no database driver)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from eolake.embedded.state import StateDir


class Running(Protocol):
    name: str
    process: object  # a subprocess.Popen

    @property
    def running(self) -> bool: ...


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc), to tell it from a later process with its pid;
    None once it has ended (a zombie too: it waits for a reaper, it runs nothing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def record_children(state: StateDir, children: Iterable[Running]) -> None:
    alive = {str(c.process.pid): {"name": c.name, "started": start_time(c.process.pid)} for c in children if c.running}
    tmp = state.children_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(alive))
    os.replace(tmp, state.children_file)


def leftover_children(state: StateDir) -> dict[str, int]:
    """Recorded children still running (by name) though no supervisor runs: they should have died with it."""
    try:
        recorded = json.loads(state.children_file.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {
        entry["name"]: int(pid)
        for pid, entry in recorded.items()
        if entry.get("started") and start_time(int(pid)) == entry["started"]
    }


def stop_leftovers(state: StateDir, timeout: float = 10.0) -> list[str]:
    """Stop the leftover children (SIGTERM to their process groups, then SIGKILL); returns their names."""
    leftovers = leftover_children(state)
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in leftovers.values():
            try:
                os.killpg(pid, signum)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + timeout
        while leftover_children(state) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not leftover_children(state):
            break
    state.children_file.unlink(missing_ok=True)
    return sorted(leftovers)
