"""PostgreSQL settings derived from the machine (eolake_spec.tuning): sane and bounded from a small VM to a large
server, accepted by the real server, applied by the embedded platform, with the spec's own settings winning."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest
from pydantic import ValidationError

from eolake.embedded.postgres import DEFAULT_MAX_CONNECTIONS, PostgresCluster, machine
from eolake_spec import load_stack
from eolake_spec.platform import Database, Postgres
from eolake_spec.tuning import GB, MB, Machine, postgres_settings

MACHINES = [
    Machine(memory=256 * MB, cpus=1),
    Machine(memory=1 * GB, cpus=1),
    Machine(memory=4 * GB, cpus=2),
    Machine(memory=16 * GB, cpus=4),
    Machine(memory=64 * GB, cpus=16),
    Machine(memory=1024 * GB, cpus=128),
]
SHOWN_AS = {("wal_compression", "on"): "pglz"}  # PostgreSQL 15+ names the method `on` stands for
MEMORY = ("shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem", "temp_buffers", "max_wal_size")


def size(value: str) -> int:
    assert value.endswith("MB"), value
    return int(value.removesuffix("MB")) * MB


@pytest.mark.parametrize("host", MACHINES, ids=lambda m: f"{m.memory // MB}MiB-{m.cpus}cpu")
@pytest.mark.parametrize("connections", [20, 200, 1000])
def test_settings_stay_within_the_machine(host, connections):
    settings = postgres_settings(host, connections)
    shared, cache = size(settings["shared_buffers"]), size(settings["effective_cache_size"])
    assert 0.2 * host.memory <= shared <= 0.3 * host.memory or shared == 32 * GB  # pgstac's range, capped
    assert 0.5 * host.memory <= cache <= 0.75 * host.memory and cache > shared
    work = size(settings["work_mem"])
    assert 4 * MB <= work <= 128 * MB
    assert work * connections <= shared or work == 4 * MB  # one sort per connection fits in the shared buffers
    maintenance = size(settings["maintenance_work_mem"])
    assert 32 * MB <= maintenance <= 2 * GB and maintenance <= max(shared * 0.3, 32 * MB)
    assert 8 * MB <= size(settings["temp_buffers"]) <= 128 * MB
    assert 1 * GB <= size(settings["max_wal_size"]) <= 16 * GB
    assert size(settings["min_wal_size"]) < size(settings["max_wal_size"])
    assert int(settings["max_parallel_workers"]) == host.cpus <= int(settings["max_worker_processes"])
    assert int(settings["max_parallel_workers_per_gather"]) <= max(0, host.cpus // 2)
    assert settings["jit"] == "off" and settings["max_connections"] == str(connections)


def test_more_memory_never_means_smaller_settings():
    for smaller, larger in zip(MACHINES, MACHINES[1:], strict=False):
        a, b = postgres_settings(smaller, 200), postgres_settings(larger, 200)
        assert all(size(a[name]) <= size(b[name]) for name in MEMORY)


def test_disk_kind_sets_the_page_costs():
    ssd = postgres_settings(MACHINES[2], 200, "ssd")
    hdd = postgres_settings(MACHINES[2], 200, "hdd")
    assert (ssd["random_page_cost"], hdd["random_page_cost"]) == ("1.1", "4")
    assert int(ssd["effective_io_concurrency"]) > int(hdd["effective_io_concurrency"])


def test_a_machine_too_small_is_refused():
    with pytest.raises(ValueError, match="too little"):
        Machine(memory=128 * MB, cpus=1)
    with pytest.raises(ValueError, match="CPUs"):
        Machine(memory=GB, cpus=0)


def test_measured_machine_is_this_one():
    here = Machine.measured()
    assert here.cpus >= 1 and here.memory >= 256 * MB
    assert Machine.measured(share=0.5).memory == here.memory // 2


def test_command_prints_the_settings_and_refuses_a_tiny_host():
    args = ["--memory-mb", "16384", "--cpus", "4", "--max-connections", "400"]
    done = subprocess.run([sys.executable, "-m", "eolake_spec.tuning", *args], capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout) == postgres_settings(Machine(16 * GB, 4), 400)
    tiny = ["--memory-mb", "100", "--cpus", "1", "--max-connections", "100"]
    done = subprocess.run([sys.executable, "-m", "eolake_spec.tuning", *tiny], capture_output=True, text=True)
    assert done.returncode == 2 and "100 MiB of memory is too little" in done.stderr and not done.stdout


def test_spec_settings_win_and_bad_names_are_refused():
    database = Database(settings={"work_mem": "64MB", "pg_stat_statements.track": "all"}, disk="hdd")
    settings = database.server_settings(MACHINES[3])
    assert settings["work_mem"] == "64MB" and settings["pg_stat_statements.track"] == "all"
    assert settings["random_page_cost"] == "4" and settings["shared_buffers"] == "4096MB"
    with pytest.raises(ValidationError, match="settings"):
        Database(settings={"work mem; DROP": "1"})
    with pytest.raises(ValidationError, match="too little"):  # the Kubernetes instances' limits
        Postgres.model_validate({"resources": {"memory_limit": "128Mi"}})


def test_the_server_runs_with_the_settings_derived_for_this_machine(pg):
    """Every derived value is one PostgreSQL took (a value it did not understand would not show as given)."""
    derived = postgres_settings(machine(), DEFAULT_MAX_CONNECTIONS)
    with psycopg.connect(pg.dsn("postgres")) as conn:
        for name, value in derived.items():
            if name in MEMORY or name in ("min_wal_size",):
                same = conn.execute("SELECT pg_size_bytes(current_setting(%s)) = pg_size_bytes(%s)", (name, value))
            else:
                shown = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]
                assert shown in (value, SHOWN_AS.get((name, value))), (name, value, shown)
                continue
            assert same.fetchone()[0], (name, value, conn.execute("SELECT current_setting(%s)", (name,)).fetchone())


def test_the_embedded_platform_applies_its_spec(platform):
    expected = load_stack(platform.stack or "local").database.server_settings(machine())
    with psycopg.connect(PostgresCluster(platform.state / "postgres").dsn()) as conn:
        shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in ("jit", "work_mem", "max_connections")}
    assert shown == {name: expected[name] for name in shown}
