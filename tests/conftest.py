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
