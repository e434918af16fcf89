"""Shared fixtures: a real private PostgreSQL + PostGIS + pgstac cluster, and the embedded platform started by the
CLI, each once for the whole test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from eolake.embedded.postgres import PostgresCluster, free_port
from servers import RunningPlatform, describe, private_cluster

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
def platform() -> RunningPlatform:
    """`eolake up` in a fresh state directory (demo data loaded), `eolake down` at the end of the session."""
    import shutil
    import tempfile

    # Not under pytest's tmp_path: that is private (0700), and as root the cluster runs as the postgres user.
    root = Path(tempfile.mkdtemp(prefix="eolake-acceptance-"))
    root.chmod(0o755)
    running = RunningPlatform(root=root, state=root / "state", port=free_port())
    try:
        running.up()
        yield running
    finally:
        down = running.cli("down", timeout=180)
        if down.returncode == 0:
            shutil.rmtree(root, ignore_errors=True)
    # Only reached when the tests ran (a failed start raised above, after `down`).
    assert down.returncode == 0, f"eolake down failed; state kept in {root}\n{describe(down)}"
