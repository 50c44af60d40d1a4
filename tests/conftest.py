"""Shared fixtures; helpers live in harness/ (repo.py: in-process servers). Keep this small."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from satchel.server.app import create_app
from satchel.server.repository import Repository
from satchel.sync.local import LocalStore
from satchel.sync.store import FolderChunkStore

from harness.http import TestClient
from harness.repo import make_repository
from harness.services import (
    PostgresCluster,
    S3Server,
    pg_ctl_path,
    start_postgres,
    start_s3,
)

# No deadlines: CI machines vary, and no test here asserts on wall-clock time.
settings.register_profile(
    "satchel",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("satchel")


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    """An empty in-process repository (objects in memory, metadata in SQLite)."""
    return make_repository(tmp_path / "srv")


@pytest.fixture
def srv(tmp_path: Path) -> Repository:
    """A repository with SQLite metadata and a real folder store (no fsync)."""
    data = tmp_path / "srv"
    return Repository(data, store=FolderChunkStore(data / "objects", durable=False))


@pytest.fixture
def app(srv: Repository) -> FastAPI:
    return create_app(srv)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """The app in process. Server exceptions become 500 responses, so "never 500" is an
    assertion, not a crash."""
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def client_store(tmp_path: Path) -> LocalStore:
    """An empty client store (no fsync: tests do not simulate power cuts)."""
    return LocalStore(tmp_path / "client", durable=False)


# -- backing services (started once per session, on loopback) --------------------------------
@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's standalone S3 server in its own process; tests make their own buckets."""
    server = start_s3(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster; tests make their own databases (``new_database()``).

    Missing PostgreSQL binaries skip locally with a reason, but fail under CI (``CI`` set),
    where .ci/run installs them: a skipped database suite must never pass for a green one.
    """
    if pg_ctl_path() is None:
        message = "PostgreSQL binaries not found (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = start_postgres(tmp_path_factory.mktemp("pg"))
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind the server supports (SQLAlchemy URL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    url = cluster.new_database()
    yield url
    cluster.drop_database(url)  # WITH (FORCE): also ends sessions a failed test left open
