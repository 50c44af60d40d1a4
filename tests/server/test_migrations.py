"""Alembic migrations: the migrated schema is the models' schema, on SQLite and PostgreSQL;
databases made before migrations existed are adopted without losing data."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from satchel.content.errors import StoreError, UsageError
from satchel.content.index import parse_index
from satchel.server import db
from satchel.server.db import (
    BASELINE,
    Line,
    Token,
    Version,
    make_engine,
    migrate,
    schema_differences,
)
from satchel.server.repository import Repository
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from harness.repo import make_repository, publish, sample_files, write_tree


def migrate_down(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), revision)


def test_a_database_already_at_the_models_schema_is_adopted_at_the_head(db_url: str) -> None:
    """Tables made by create_all with today's models (no alembic_version) match the head."""
    legacy = make_engine(db_url, upgrade=False)
    SQLModel.metadata.create_all(legacy)
    legacy.dispose()
    engine = make_engine(db_url)
    try:
        assert schema_differences(engine) == []
    finally:
        engine.dispose()
    assert stored_revision(db_url) == head_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(db.alembic_config()).get_current_head()
    assert head is not None
    return head


def stored_revision(url: str) -> str | None:
    engine = make_engine(url, upgrade=False)
    try:
        with engine.connect() as conn:
            if "alembic_version" not in inspect(conn).get_table_names():
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    # The same check `alembic revision --autogenerate` makes: an empty diff means the
    # migrations in server/migrations/versions create exactly what server/db.py declares.
    engine = make_engine(db_url)
    try:
        assert schema_differences(engine) == []
    finally:
        engine.dispose()
    assert stored_revision(db_url) == head_revision()


def test_the_comparison_notices_a_missing_migration(db_url: str) -> None:
    """The check above can fail: a table the migrations do not know is reported."""
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE staticdelta"))
        diffs = schema_differences(engine)
    finally:
        engine.dispose()
    assert any(d[0] == "add_table" and d[1].name == "staticdelta" for d in diffs), diffs


def test_upgrading_twice_changes_nothing(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        migrate(engine)
        migrate(engine)
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def legacy_database(db_url: str) -> None:
    """The schema the server made before migrations existed (create_all at revision 0001),
    with no alembic_version table."""
    engine = make_engine(db_url, upgrade=False)
    try:
        migrate(engine, BASELINE)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
    finally:
        engine.dispose()


def test_a_database_made_by_create_all_is_adopted_with_its_data(db_url: str) -> None:
    legacy_database(db_url)
    legacy = make_engine(db_url, upgrade=False)
    with legacy.begin() as conn:  # rows as the old code wrote them (its columns only)
        conn.execute(
            text(
                "INSERT INTO token (token_hash, role, label, created, revoked)"
                " VALUES (:h, 'admin', 'kept', :c, false)"
            ),
            {"h": "h" * 64, "c": datetime(2026, 1, 2, 3, 4, 5)},
        )
        conn.execute(
            text(
                "INSERT INTO line (bundle, locale, title, latest_version)"
                " VALUES ('course', 'en', 'Kept', 2)"
            )
        )
        for v in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO version (bundle, locale, version, manifest_id,"
                    " manifest_size, created, files, size, notes)"
                    " VALUES ('course', 'en', :v, :m, :n, :c, 0, 0, '')"
                ),
                {"v": v, "m": f"{v}" * 64, "n": 10 * v, "c": datetime(2026, 1, 2, 3, 4, 5)},
            )
    legacy.dispose()
    assert stored_revision(db_url) is None

    engine = make_engine(db_url)  # what `satchel serve` does at start
    try:
        assert schema_differences(engine) == []
        with Session(engine) as s:
            token = s.exec(select(Token)).one()
            assert (token.label, token.role) == ("kept", "admin")
            line = s.get(Line, ("course", "en"))
            assert line is not None and (line.title, line.latest_version) == ("Kept", 2)
            versions = s.exec(select(Version)).all()
            assert len(versions) == 2
            assert {(v.token_label, v.token_role, v.base_locale) for v in versions} == {
                ("", "", None)
            }
            assert (line.subject, line.lessons, line.base_locale) == ("", 0, None)
    finally:
        engine.dispose()
    assert stored_revision(db_url) == head_revision()


def test_a_pre_migration_server_data_folder_keeps_serving(tmp_path: Path) -> None:
    """A whole SQLite server made before migrations: same versions and index after start."""
    data = tmp_path / "srv"
    repo = make_repository(data)
    publish(repo, write_tree(tmp_path / "v1", sample_files(1)))
    body, _ = repo.source.index("course", "en")
    repo.engine.dispose()
    # Take the schema back to what the code before migrations made (revision 0001, no
    # alembic_version table), keeping the rows.
    url = db.sqlite_url(data)
    engine = make_engine(url, upgrade=False)
    migrate_down(engine, BASELINE)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()
    assert stored_revision(url) is None

    again = Repository(data, store=repo.store)
    # The line's index is signed afresh (its table is newer than 0001), naming the same version.
    assert parse_index(again.source.index("course", "en")[0])[1].line == parse_index(body)[1].line
    assert [v.version for v in again.reads.catalog()[0].versions] == [1]
    assert stored_revision(url) == head_revision()


def test_a_database_from_a_newer_satchel_is_refused_clearly(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    try:
        with pytest.raises(StoreError, match="newer satchel"):
            migrate(engine)
    finally:
        engine.dispose()


def test_the_baseline_revision_is_the_first() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db.alembic_config())
    base = script.get_base()
    assert base == BASELINE


@pytest.mark.parametrize(
    "url", ["nonsense", "postgresql+nosuchdriver://x/y", "mysql+nosuchdriver://", "://"]
)
def test_unusable_database_urls_are_usage_errors(url: str) -> None:
    with pytest.raises(UsageError):
        make_engine(url)


def test_an_unreachable_postgresql_is_a_store_error() -> None:
    from harness.e2e import free_port

    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none?connect_timeout=3"
    with pytest.raises(StoreError, match="database schema"):
        make_engine(url)
