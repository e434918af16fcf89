"""PostgreSQL settings derived from the machine the database runs on: one rule for every target.

The embedded runner measures this machine (`Machine.measured`), the Kubernetes target reads the database pods'
resources from the spec, the on-premise role asks this module on the controller with the database host's facts
(`python -m eolake_spec.tuning --memory-mb N --cpus N --max-connections N`, which prints the settings as JSON).

What the rules aim at (pgstac's `check_pgstac_settings` checks the same ranges): shared buffers a quarter of the
memory, the planner told that most of the rest caches files, one sort or hash per connection within the shared
buffers, maintenance (index builds, vacuum) a quarter of the shared buffers, SSD costs, room for pgstac's temporary
tables, checkpoints paced by time rather than by WAL volume, and no JIT (pgstac's queries are short: compiling them
costs more than it saves). Each value is bounded, so a tiny or a huge machine gets sane settings too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MB = 2**20
GB = 2**30
Disk = Literal["ssd", "hdd"]


@dataclass(frozen=True)
class Machine:
    """What PostgreSQL may use: memory in bytes, CPUs."""

    memory: int
    cpus: int

    def __post_init__(self) -> None:
        if self.memory < 256 * MB:
            raise ValueError(f"{self.memory // MB} MiB of memory is too little for PostgreSQL with pgstac (256 MiB+)")
        if self.cpus < 1:
            raise ValueError(f"{self.cpus} CPUs: at least one is needed")

    @classmethod
    def measured(cls, share: float = 1.0) -> Machine:
        """This machine, within its cgroup's limits if any; `share` of its memory (the rest for what runs beside)."""
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        limit = _cgroup("memory.max")  # "max" or bytes
        if limit and limit[0].isdigit():
            memory = min(memory, int(limit[0]))
        cpus = len(os.sched_getaffinity(0))
        quota = _cgroup("cpu.max")  # "max 100000" or "<quota> <period>" (microseconds)
        if len(quota) == 2 and quota[0].isdigit():
            cpus = min(cpus, math.ceil(int(quota[0]) / int(quota[1])))
        return cls(memory=int(memory * share), cpus=max(1, cpus))


def _cgroup(name: str) -> list[str]:
    """A cgroup v2 file of this process's group, split; [] where there is none."""
    try:
        return Path("/sys/fs/cgroup", name).read_text().split()
    except OSError:
        return []


def _clamp(value: float, low: int, high: int) -> int:
    return int(min(max(value, low), high))


def _size(value: int) -> str:
    """A memory setting in whole MB (PostgreSQL's unit words)."""
    return f"{max(1, value // MB)}MB"


def postgres_settings(machine: Machine, max_connections: int, disk: Disk = "ssd") -> dict[str, str]:
    """The server settings for `machine`, a cluster accepting `max_connections` (name: value, as in postgresql.conf)."""
    shared = _clamp(machine.memory * 0.25, 32 * MB, 32 * GB)
    maintenance = _clamp(shared * 0.25, 32 * MB, 2 * GB)
    max_wal = _clamp(shared * 2, 1 * GB, 16 * GB)
    gather = min(4, machine.cpus // 2)
    ssd = disk == "ssd"
    return {
        "max_connections": str(max_connections),
        "shared_buffers": _size(shared),
        "effective_cache_size": _size(int(machine.memory * 0.7)),
        "work_mem": _size(_clamp(shared / max_connections, 4 * MB, 128 * MB)),
        "maintenance_work_mem": _size(maintenance),
        "temp_buffers": _size(_clamp(shared / 16, 8 * MB, 128 * MB)),
        "random_page_cost": "1.1" if ssd else "4",
        "effective_io_concurrency": "200" if ssd else "2",
        "maintenance_io_concurrency": "100" if ssd else "10",
        "max_wal_size": _size(max_wal),
        "min_wal_size": _size(max(80 * MB, max_wal // 4)),
        "checkpoint_timeout": "15min",
        "checkpoint_completion_target": "0.9",
        "wal_compression": "on",
        "jit": "off",
        "max_worker_processes": str(max(8, machine.cpus + 4)),
        "max_parallel_workers": str(machine.cpus),
        "max_parallel_workers_per_gather": str(gather),
        "max_parallel_maintenance_workers": str(gather),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eolake_spec.tuning", description="PostgreSQL settings for a machine, as JSON"
    )
    parser.add_argument("--memory-mb", type=int, required=True, help="memory PostgreSQL may use, MiB")
    parser.add_argument("--cpus", type=int, required=True)
    parser.add_argument("--max-connections", type=int, required=True)
    parser.add_argument("--disk", choices=["ssd", "hdd"], default="ssd")
    args = parser.parse_args(argv)
    try:
        machine = Machine(memory=args.memory_mb * MB, cpus=args.cpus)
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps(postgres_settings(machine, args.max_connections, args.disk)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
