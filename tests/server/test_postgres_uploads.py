"""tests/server/test_upload_batches.py, every test of it, with the server's metadata on
PostgreSQL: an upload's rows written in one statement (INSERT ... ON CONFLICT) there too.
"""

from __future__ import annotations

import pytest

from harness.on_postgres import (  # noqa: F401 - fixtures and a check, collected here
    _drop_this_tests_databases,
    _on_postgres,
    test_this_module_really_runs_on_postgresql,
)
from tests.server.test_upload_batches import *  # noqa: F403

pytestmark = pytest.mark.postgres
