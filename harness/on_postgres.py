"""Fixtures that put a whole imported test module on PostgreSQL.

A module re-runs another module's tests by ``from tests.test_x import *`` and imports these
fixtures: every Repository those tests make then gets a database of a throwaway PostgreSQL
cluster (see harness/services.py) instead of SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from satchel.server.repository import Repository

from harness.services import OnPostgres, PostgresCluster, repositories_on_postgres


@pytest.fixture(scope="module", autouse=True)
def _on_postgres(pg_cluster: PostgresCluster) -> Iterator[OnPostgres]:
    with repositories_on_postgres(pg_cluster) as state:
        yield state


@pytest.fixture(autouse=True)
def _drop_this_tests_databases(_on_postgres: OnPostgres) -> Iterator[None]:
    # Databases of module-scoped fixtures exist before this snapshot and are kept.
    keep = set(_on_postgres.databases)
    yield
    _on_postgres.drop_all_but(keep)


def test_this_module_really_runs_on_postgresql(tmp_path: Path) -> None:
    assert Repository(tmp_path / "srv").engine.dialect.name == "postgresql"
