"""Shared fixtures: a real private PostgreSQL + PostGIS + pgstac cluster, and the embedded platform started by the
CLI, each once for the whole test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from eolake.embedded.postgres import PostgresCluster
from servers import RunningPlatform, embedded_platform, private_cluster

# The browser tests' platform and Chromium: one session fixture for all test_web_browser_* modules.
pytest_plugins = ["web_browser"]

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With two xdist workers (`./eolake test`), the on-premise modules run on one, the rest on the other: the booted
    hosts' playbook runs mostly wait, and every session fixture (the platform, the cluster) still starts once."""
    for item in items:
        group = "onprem" if item.module.__name__.startswith("test_onprem") else "rest"
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def pg() -> PostgresCluster:
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def scratch_platform():
    """An embedded platform the tests may write anything to (the fuzzer, the write inventory); not for tests that
    need the demo data as loaded (the acceptance suites start their own)."""
    from servers import embedded_platform

    with embedded_platform("eolake-scratch-") as running:
        yield running


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
def platform() -> RunningPlatform:
    """`eolake up` in a fresh state directory (demo data loaded), `eolake down` at the end of the session; shared by
    the tests that only read or that write what no other test reads (acceptance, hostile input, write inventory)."""
    with embedded_platform("eolake-platform-") as running:
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
