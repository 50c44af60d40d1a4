"""Alembic environment for Satchel's server schema (run by :func:`satchel.server.db.migrate`).

The caller passes an open connection in ``config.attributes["connection"]``; there is no
alembic.ini and no URL here, so ``satchel serve`` and the tests use exactly one code path.
``render_as_batch`` makes ALTERs work on SQLite too (alembic copies the table there).
"""

from __future__ import annotations

import satchel.server.db  # noqa: F401  (registers the tables on SQLModel.metadata)
from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through satchel.server.db.migrate (it passes a connection)")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
