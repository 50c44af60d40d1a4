"""Server metadata in SQL (SQLite by default, any SQLAlchemy URL otherwise), via SQLModel.

Objects themselves live in the chunk store; the database says which versions exist, which
objects are complete, who may publish, and holds the current signed index, so that several
replicas sharing one database agree on all of it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel, create_engine


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


class IndexState(SQLModel, table=True):
    id: int = Field(default=1, primary_key=True)
    serial: int = 0
    body: bytes = b""
    etag: str = ""
    issued: datetime = Field(default_factory=utcnow)
    expires: datetime = Field(default_factory=utcnow)


def make_engine(url: str) -> Engine:
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
    SQLModel.metadata.create_all(engine)
    return engine


def sqlite_url(data: Path) -> str:
    return f"sqlite:///{data / 'satchel.db'}"
