"""tests/test_delta_http.py, every test of it, with the server's metadata on PostgreSQL:
deltas and ready-made static delta packs.

The tests are imported as they are; an autouse fixture gives every Repository they make a
database of a throwaway PostgreSQL cluster (see tests/support/services.py) instead of SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from satchel.server.service import Repository as _Repository

from tests.support.services import OnPostgres, PostgresCluster, repositories_on_postgres
from tests.test_delta_http import *  # noqa: F403

pytestmark = pytest.mark.postgres


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
    assert _Repository(tmp_path / "srv").engine.dialect.name == "postgresql"
