"""Memory bounds of the embedded runner's processes, enforced by the kernel.

Preferred: one cgroup per child, created beside the supervisor (memory.max on cgroup v2, memory.limit_in_bytes on
v1). It bounds the child together with its worker processes and counts the memory really used, not the address
space GDAL, numpy and threads reserve; past it the kernel kills the child, and the supervisor restarts it. That needs
a memory controller the supervisor may write: as root on cgroup v1, or a delegated v2 subtree whose memory
controller is enabled for children.

Otherwise every process gets RLIMIT_DATA (heap and private anonymous memory; RLIMIT_AS would also count reserved
address space and file mappings, so a bound that stops a runaway would fail ordinary start-ups): past it allocations
fail (MemoryError) instead of taking the machine down, but worker processes are bounded one by one, not together.
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("eolake.supervisor")
V1_FILES = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")  # with swap: swapping past the bound is no bound
V2_FILES = ("memory.max",)
V2_SWAP_OFF = "memory.swap.max"


class MemoryLimits:
    """Bounds for the supervisor's children: cgroups under `root` (made for this supervisor), else rlimits."""

    def __init__(self, root: Path | None = None, version: int | None = None):
        self.root, self.version = root, version

    @property
    def mechanism(self) -> str:
        return f"cgroup v{self.version}" if self.root else "rlimit"

    @classmethod
    def detect(cls, tag: str) -> MemoryLimits:
        """cgroups when the supervisor may create them (under its own cgroup, named `tag`), else rlimits."""
        for version, parent in _memory_cgroups():
            _remove_stale(parent)
            root = parent / tag
            try:
                root.mkdir(exist_ok=True)
                if version == 2:
                    (root / "cgroup.subtree_control").write_text("+memory")
                return cls(root, version)
            except OSError as exc:
                log.info("no memory cgroup under %s (%s)", parent, exc.strerror)
                _remove(root)
        return cls()

    def preexec(self, name: str, limit: int) -> Callable[[], None]:
        """What the child runs before its program: join its bounded cgroup, or bound its own data size."""
        if not self.root:
            return lambda: resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        group = self.root / name
        group.mkdir(exist_ok=True)
        for file in V1_FILES if self.version == 1 else V2_FILES:
            if (group / file).exists():
                (group / file).write_text(str(limit))
        if self.version == 2 and (group / V2_SWAP_OFF).exists():
            (group / V2_SWAP_OFF).write_text("0")
        procs = str(group / "cgroup.procs")

        def join() -> None:
            with open(procs, "w") as out:
                out.write(str(os.getpid()))

        return join

    def oom_kills(self, name: str) -> int:
        """How often the kernel killed a process of `name` for its bound (0 with rlimits: nothing is killed)."""
        if not self.root:
            return 0
        events = self.root / name / ("memory.oom_control" if self.version == 1 else "memory.events")
        try:
            lines = dict(line.split() for line in events.read_text().splitlines())
        except (OSError, ValueError):
            return 0
        return int(lines.get("oom_kill", 0))

    def release(self) -> None:
        """Remove the cgroups made for this supervisor (their processes have ended)."""
        if self.root:
            for group in self.root.iterdir():
                if group.is_dir():
                    _remove(group)
            _remove(self.root)


def _memory_cgroups() -> list[tuple[int, Path]]:
    """(version, directory of this process's cgroup) of each mounted hierarchy with a memory controller."""
    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for _, mountpoint, fstype, options, *_ in mounts:
            if controllers == "" and fstype == "cgroup2":
                directory = Path(mountpoint + path)
                if "memory" in _read(directory / "cgroup.subtree_control").split():
                    found.append((2, directory))
            elif "memory" in controllers.split(",") and fstype == "cgroup" and "memory" in options.split(","):
                found.append((1, Path(mountpoint + path)))
    return [(version, directory) for version, directory in found if os.access(directory, os.W_OK)]


def _remove_stale(parent: Path) -> None:
    """Empty cgroups left by supervisors that were killed (eolake-<pid> of a pid that is gone)."""
    for root in parent.glob("eolake-*"):
        pid = root.name.removeprefix("eolake-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            MemoryLimits(root).release()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _remove(group: Path) -> None:
    try:
        group.rmdir()
    except OSError:
        pass
