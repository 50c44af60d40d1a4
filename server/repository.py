"""The server's parts, wired: one data folder, database, chunk store and signing key, and the
services over them.

=================  ==========================================================
``tokens``         who is asking (:mod:`~satchel.server.tokens`)
``index_signer``   the signed release index (:mod:`~satchel.server.indexing`)
``source``         the read protocol: manifests, objects, packs (:mod:`~satchel.server.reading`)
``reads``          catalog, history, translation status (:mod:`~satchel.server.readmodels`)
``publishing``     begin, receive, commit (:mod:`~satchel.server.publishing`)
``lines``          withdraw a version, remove a line (:mod:`~satchel.server.lines`)
``records``        learning records in, receipts out (:mod:`~satchel.server.records`)
``classes``        classes, learners, devices (:mod:`~satchel.server.classes`)
``reports``        what the classes did (:mod:`~satchel.server.reports`)
=================  ==========================================================

Authorization is :mod:`~satchel.server.authz`. FastAPI routes (:mod:`~satchel.server.app`) and
the web page (:mod:`~satchel.server.web`) only translate HTTP to calls on these.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from satchel.content.errors import UsageError
from satchel.content.index import MAX_DELTAS
from satchel.content.signing import SigningKey
from satchel.sync.store import ChunkStore, FolderChunkStore

from .classes import Classes
from .database import Database
from .db import make_engine, sqlite_url
from .indexing import IndexSigner
from .lines import Lines
from .publishing import Publishing
from .reading import ServerSource
from .readmodels import ReadModels
from .records import Records
from .reports import Reports
from .tokens import Tokens


def utc_seconds() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Repository:
    def __init__(
        self,
        data: Path,
        *,
        database_url: str | None = None,
        signing_key: Path | None = None,
        store: ChunkStore | None = None,
        static_deltas: int = 3,
        clock: Callable[[], datetime] = utc_seconds,
        signs: bool = True,
        creates: bool = True,
    ) -> None:
        """``signs=False`` opens the repository for administration only (``satchel token``):
        no key file is created and the shared index is never re-signed, so running it against
        a replicas' database cannot put another key's signature on their index.
        ``creates=False`` makes no data folder (the commands other than ``serve`` check
        theirs first: :func:`satchel.server.commands.check_server_data`)."""
        if not 0 <= static_deltas <= MAX_DELTAS:
            raise UsageError(
                f"static deltas must be 0..{MAX_DELTAS} (the index lists at most that)"
            )
        if creates:
            data.mkdir(parents=True, exist_ok=True)
        self.data = data
        self.clock = clock
        key_path = signing_key or data / "signing-key.pem"
        if signs:
            self.key = SigningKey.load_or_create(key_path)
        else:  # never used to sign: see above
            self.key = SigningKey.load(key_path) if key_path.exists() else SigningKey.generate()
        self.engine = make_engine(database_url or sqlite_url(data))
        self.db = Database(self.engine)
        self.store: ChunkStore = store or FolderChunkStore(data / "objects")
        self.tokens = Tokens(self.db, clock)
        self.index_signer = IndexSigner(self.db, self.key, clock)
        self.source = ServerSource(self.db, self.store, self.index_signer.current)
        self.reads = ReadModels(self.db, self.source.manifest)
        self.publishing = Publishing(
            self.db,
            self.store,
            self.key,
            self.source,
            self.index_signer,
            self.tokens,
            clock,
            static_deltas,
        )
        self.lines = Lines(self.db, self.index_signer, clock)
        self.records = Records(self.db, self.key, clock)
        self.classes = Classes(self.db, clock)
        self.reports = Reports(self.db, self.classes, clock)
        if signs:
            self.index_signer.resign_if_key_changed()
