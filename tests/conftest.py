"""Shared fixtures. Helpers live in tests/support/repo.py; keep this file small."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from satchel.server.service import Repository
from satchel.sync.local import LocalStore

from tests.support.repo import make_repository

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
def client_store(tmp_path: Path) -> LocalStore:
    """An empty client store (no fsync: tests do not simulate power cuts)."""
    return LocalStore(tmp_path / "client", durable=False)
