"""Shared fixtures: a real private PostgreSQL + PostGIS + pgstac cluster for the whole test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from eolake.embedded.postgres import PostgresCluster
from servers import private_cluster

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def pg() -> PostgresCluster:
    with private_cluster() as cluster:
        yield cluster


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
