"""Server metadata in SQL (SQLite by default, any SQLAlchemy URL otherwise), via SQLModel.

Objects themselves live in the chunk store; the database says which versions exist, which
objects are complete, who may publish, and holds the current signed index, so that several
replicas sharing one database agree on all of it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from satchel.content.errors import StoreError, UsageError
from sqlalchemy import BigInteger, UniqueConstraint, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlmodel import Field, SQLModel, create_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"
"""The revision that matches the schema that ``create_all`` made before migrations existed."""


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Token(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(index=True, unique=True)
    role: str
    bundle: str | None = None
    locale: str | None = None
    label: str = ""
    created: datetime = Field(default_factory=utcnow)
    revoked: bool = False
    revoked_at: datetime | None = None


class Line(SQLModel, table=True):
    """One bundle in one locale: its latest version and its compression dictionary.

    A line with ``base_locale`` is a locale variant of the line (bundle, base_locale); the
    descriptive fields come from the latest version's signed metadata (for the catalog).
    """

    bundle: str = Field(primary_key=True)
    locale: str = Field(primary_key=True)
    title: str = ""
    latest_version: int = 0
    dictionary_id: str | None = None
    dictionary_length: int | None = None
    base_locale: str | None = None
    subject: str = ""
    grade: str = ""
    description: str = ""
    lessons: int = 0
    # An admin took the line away: its signed index says so, and laptops drop it.
    removed: bool = False
    removed_at: datetime | None = None
    removed_by: str = ""  # "label (role)" as it was then
    removed_notes: str = ""


class Version(SQLModel, table=True):
    bundle: str = Field(primary_key=True)
    locale: str = Field(primary_key=True)
    version: int = Field(primary_key=True)
    manifest_id: str = Field(index=True)
    manifest_size: int
    parent_version: int | None = None
    created: datetime = Field(default_factory=utcnow)
    files: int = 0
    size: int = 0
    token_id: int | None = None
    notes: str = ""
    # Who published, as it was then (a token may be revoked later; the history stays).
    token_label: str = ""
    token_role: str = ""
    # For a locale variant: the base line's locale and the base version it was made from.
    base_locale: str | None = None
    base_version: int | None = None
    # A teacher took the version back: laptops that have not switched skip it.
    withdrawn: bool = False
    withdrawn_at: datetime | None = None
    withdrawn_by: str = ""  # "label (role)" as it was then
    withdrawn_notes: str = ""


class Chunk(SQLModel, table=True):
    """An object that is completely stored and verified (chunk, dictionary or manifest)."""

    id: str = Field(primary_key=True)
    length: int
    stored_size: int
    dictionary: str | None = None


class Upload(SQLModel, table=True):
    id: str = Field(primary_key=True)
    bundle: str
    locale: str
    draft: bytes
    token_id: int | None = None
    extras: int = 0  # objects not in the draft (dictionaries) uploaded so far
    base_locale: str | None = None  # a variant publish: the base line and its version then
    base_version: int | None = None
    created: datetime = Field(default_factory=utcnow)


class StaticDelta(SQLModel, table=True):
    """A ready-made pack from one version's manifest to a later one of the same line."""

    from_manifest: str = Field(primary_key=True)
    to_manifest: str = Field(primary_key=True, index=True)
    from_version: int
    object_id: str
    size: int
    objects: int


class LineIndex(SQLModel, table=True):
    """The signed release index of one line, as served (re-signed on every change of the
    line and when half its validity is gone); the serial grows per line."""

    bundle: str = Field(primary_key=True)
    locale: str = Field(primary_key=True)
    serial: int = 0
    body: bytes = b""
    etag: str = ""
    issued: datetime = Field(default_factory=utcnow)
    expires: datetime = Field(default_factory=utcnow)


# -- learning records (server/records.py, server/classes.py, server/reports.py) ----------------
class SchoolClass(SQLModel, table=True):
    """A class that learners join with its code; its records are reported to its line's
    teachers."""

    code: str = Field(primary_key=True)  # shown form, e.g. 7KQ2-M9X7
    bundle: str = Field(index=True)
    locale: str
    name: str
    created_by: str = ""  # the token's label and role, as they were then
    created_by_token: int | None = None
    created: datetime = Field(default_factory=utcnow)


class Device(SQLModel, table=True):
    """A laptop's device key (id = key id), as first and last seen in a delivery. Its row is
    locked while a batch of its records is decided and stored."""

    id: str = Field(primary_key=True)
    first_seen: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)
    revoked: bool = False
    revoked_reason: str = ""
    revoked_at: datetime | None = None
    refused_batches: int = 0  # batches refused since it was revoked
    last_refused: datetime | None = None


class RecordAck(SQLModel, table=True):
    """A device's highest contiguous stored seq: what its receipts say."""

    device: str = Field(primary_key=True)
    acked_through: int = Field(default=0, sa_type=BigInteger)
    updated: datetime = Field(default_factory=utcnow)


class LearnerRow(SQLModel, table=True):
    """A learner as its device first reported it (the device owns the learner id)."""

    __tablename__ = "learner"
    id: str = Field(primary_key=True)
    device: str = Field(index=True)
    name: str
    class_code: str = Field(index=True)
    bundle: str
    locale: str
    joined: datetime
    first_seen: datetime = Field(default_factory=utcnow)
    revoked: bool = False
    revoked_reason: str = ""
    revoked_at: datetime | None = None


class RecordRow(SQLModel, table=True):
    """One learning record, stored once by (device, seq). ``quarantine`` says why a record
    is kept but not reported (unknown class code, learner revoked)."""

    __tablename__ = "record"
    __table_args__ = (UniqueConstraint("device", "seq", name="uq_record_device_seq"),)
    id: int | None = Field(default=None, primary_key=True)
    device: str
    seq: int = Field(sa_type=BigInteger)
    learner: str = Field(index=True)
    class_code: str = Field(index=True)
    bundle: str
    locale: str
    lesson: str
    kind: str
    question: str | None = None
    answer: str | None = None
    correct: bool | None = None
    score_milli: int | None = None
    time: datetime
    received: datetime = Field(default_factory=utcnow)
    batch: str
    quarantine: str | None = None


def make_engine(url: str, *, upgrade: bool = True) -> Engine:
    """An engine for ``url``; with ``upgrade`` the schema is migrated to the newest revision."""
    try:
        engine = _create(url)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise UsageError(f"database URL is not usable: {exc}") from None
    if upgrade:
        migrate(engine)
    return engine


def database_state(url: str) -> str:
    """What the database at ``url`` holds, changing nothing: ``"satchel"`` (Satchel's tables),
    ``"empty"`` (no tables: made for Satchel, not started yet), ``"other"`` (someone else's
    tables) or ``"missing"`` (an SQLite file that does not exist)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UsageError(f"database URL is not usable: {exc}") from None
    file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if file not in (None, "", ":memory:") and not Path(str(file)).is_file():
        return "missing"  # opening it would make a new, empty file
    try:
        engine = _create(url)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise UsageError(f"database URL is not usable: {exc}") from None
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
    except SQLAlchemyError as exc:
        raise UsageError(f"cannot open the database at --database-url: {exc}") from None
    finally:
        engine.dispose()
    # Databases made before migrations have the tables but no alembic_version.
    if "alembic_version" in tables or str(Token.__tablename__) in tables:
        return "satchel"
    return "other" if tables else "empty"


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # WAL lets readers go on during a publish; FULL makes a committed version durable.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def alembic_config(connection: Connection | None = None) -> Any:
    """Alembic's config for the migrations shipped in this package (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


# Any constant works; it only has to be the same in every replica.
_PG_MIGRATION_LOCK = 0x5A7C4E1


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (alembic upgrade), at every server start.

    A database made by the code before migrations (tables, no ``alembic_version``) is first
    stamped with the baseline revision it matches, so its data is kept. On PostgreSQL an
    advisory lock makes replicas that start together migrate one after the other.
    """
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.util.exc import CommandError

    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
            try:
                config = alembic_config(conn)
                tables = set(inspect(conn).get_table_names())
                if "alembic_version" not in tables and "line" in tables:
                    # Made by create_all: adopt it at the revision its tables match (the
                    # baseline, or the head if it already has every column).
                    matches_head = not compare_metadata(
                        MigrationContext.configure(conn), SQLModel.metadata
                    )
                    command.stamp(config, "head" if matches_head else BASELINE)
                    conn.commit()
                command.upgrade(config, revision)
                conn.commit()
            finally:
                if conn.dialect.name == "postgresql":
                    try:
                        conn.rollback()  # a failed migration leaves an aborted transaction
                        conn.execute(
                            text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK}
                        )
                        conn.commit()
                    except DBAPIError:
                        conn.invalidate()  # closing the session releases the lock too
    except DBAPIError as exc:
        raise StoreError(f"cannot prepare the database schema: {exc.orig}") from None
    except CommandError as exc:  # e.g. a revision from a newer satchel
        raise StoreError(
            f"database schema: {exc}; is this database from a newer satchel?"
        ) from None


def schema_differences(engine: Engine) -> list[Any]:
    """What alembic autogenerate would change to make the database match the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def sqlite_url(data: Path) -> str:
    return f"sqlite:///{data / 'satchel.db'}"
