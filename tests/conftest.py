"""Shared fixtures: a real private PostgreSQL + PostGIS + pgstac cluster, and the embedded platform started by the
CLI, each once for the whole test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from eolake.embedded.postgres import PostgresCluster
from servers import STACKS, RunningPlatform, private_cluster, signed_in_platform

# The browser tests' platform and Chromium: one session fixture for all test_web_browser_* modules.
pytest_plugins = ["web_browser"]

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_STACK = "local"  # of the shared `platform` (servers.STACKS)


LONGEST_FIRST = {"platform": 0, "onprem": 1}  # groups started first, each on a worker; the modules then fill in


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "loadscopereorder"):  # xdist: the groups in the order below, not by their sizes
        config.option.loadscopereorder = False


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The groups two xdist workers share (`./eolake test`: --dist loadgroup): the modules that run an embedded
    platform (the shared one boots once, and no two platforms, with their brokers and cgroups, run at once), the
    on-premise modules (their booted hosts), and every other module on its own (its module fixtures start once). The
    two longest start first, one a worker; a worker done with a group takes the next.

    The tests on the shared platform run by stack, the default first; those that may write anything last."""
    on_a_platform = {item.module.__name__ for item in items if item.get_closest_marker("slow") or platform_turn(item)}
    groups = {}
    for item in items:
        module = item.module.__name__
        group = "onprem" if module.startswith("test_onprem") else "platform" if module in on_a_platform else module
        item.add_marker(pytest.mark.xdist_group(group))
        groups[item.nodeid] = group
    items.sort(key=lambda item: (LONGEST_FIRST.get(groups[item.nodeid], 2), platform_turn(item)))


def platform_turn(item: pytest.Item) -> tuple:
    """Where a test goes among the shared platform's (sorting is stable: the others keep their order)."""
    writes = "scratch_platform" in getattr(item, "fixturenames", ())
    defs = getattr(item, "_fixtureinfo", None) and item._fixtureinfo.name2fixturedefs.get("platform")
    if not writes and (not defs or defs[-1].func is not platform.__wrapped__):  # none, or a module's own
        return ()
    stack = item.callspec.params.get("platform", DEFAULT_STACK) if hasattr(item, "callspec") else DEFAULT_STACK
    return (1, stack != DEFAULT_STACK, stack, writes)


@pytest.fixture(scope="session")
def pg() -> PostgresCluster:
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def scratch_platform(platform):
    """The shared platform, for tests that may write anything to it (the fuzzer, the write inventory): they run after
    every other test on it (pytest_collection_modifyitems), which see the demo data as loaded."""
    return platform


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"sample data not found at {SHARED_DATA}: shared/ must sit beside the checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def thesaurus_storage(shared_data) -> Path:
    """A storage folder whose thesaurus index holds GEMET (en + fr) and the INSPIRE themes, built once."""
    import shutil
    import tempfile

    from eolake_thesaurus.demo import load_demo_vocabularies

    storage = Path(tempfile.mkdtemp(prefix="eolake-test-thesaurus-"))
    load_demo_vocabularies(storage, shared_data / "thesauri")
    yield storage
    shutil.rmtree(storage, ignore_errors=True)


@pytest.fixture(scope="session")
def platform(request) -> RunningPlatform:
    """The embedded platform of every whole-platform test that does not need its own, `eolake up` once per session:
    the local stack, its users signing in at a test OpenID Connect provider as well as with API keys, demo data
    loaded; `eolake down` at the end of the session. A module needing another of STACKS asks for it with
    `pytest.mark.parametrize("platform", [name], indirect=True)`: the tests run by stack, each booted once."""
    stack = getattr(request, "param", DEFAULT_STACK)
    with signed_in_platform(f"eolake-platform-{stack}-", STACKS[stack]) as running:
        yield running


@pytest.fixture(scope="session")
def onprem_hosts():
    """Booted systemd hosts db, app and proxy on a private bridge (tests/onprem_hosts.py), shared by the session.

    Fails, never skips, when this machine cannot boot them: the on-premise tests are part of the suite.
    """
    from onprem_hosts import HostsUnavailable, check_machine, test_hosts

    try:
        check_machine()
    except HostsUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    with test_hosts(("db", "app", "proxy")) as hosts:
        print(f"\non-premise test hosts ready: {', '.join(f'{n} {h.boot_seconds:.1f} s' for n, h in hosts.items())}")
        yield hosts
