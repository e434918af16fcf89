"""Shared fixtures: a real private PostgreSQL + PostGIS + pgstac cluster for the whole test session."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from eolake.embedded.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def pg() -> PostgresCluster:
    # Not under pytest's tmp dir: that is private (0700), and as root the cluster runs as the postgres user.
    root = Path(tempfile.mkdtemp(prefix="eolake-test-pg-"))
    cluster = PostgresCluster(root)
    cluster.start()
    cluster.migrate()
    yield cluster
    cluster.stop(mode="immediate")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"sample data not found at {SHARED_DATA}: shared/ must sit beside the checkout")
    return SHARED_DATA
