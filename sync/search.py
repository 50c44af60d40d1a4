"""Offline full-text search over every bundle and locale in a local store (SQLite FTS5).

The index lives beside the store's objects in ``STORE/search.sqlite``. It is derived data:
it holds nothing that cannot be rebuilt from the store, so a missing, stale-format or corrupt
file is rebuilt by the next :meth:`SearchIndex.update`, never an error a learner sees.

Schema (one row per distinct page content, whatever the number of versions that hold it)::

    docs(id, key, text_bytes, head_title)    key: the page's kind and the SHA-256 of its
                                             chunk list; head_title: what a table of contents
                                             shows (satchel.content.text.head_title)
    docs_text  FTS5(title, headings, body)    rowid = docs.id; unicode61, diacritics folded
    lines(bundle, locale, version, manifest, title, current)   every version kept in the store
    files(bundle, locale, version, path, doc, lesson)           a version: path -> content

:meth:`SearchIndex.update` brings the index in step with the store's refs: each kept version's
Markdown, HTML and CNXML files that are on this laptop (a selective sync's selection, every
chunk present) are mapped to their content key, and only content the index has not seen is
read and extracted, so a version bump re-reads the changed pages alone. Versions the store no
longer keeps (garbage collection) are dropped with every page only they used, and the freed
pages go back to the disk. Call it after a version switch and after a collection, with the
store's writer lock held (:func:`update_search_index`).

:meth:`SearchIndex.search` looks in the current version of every line (or one bundle or
locale), ranks with BM25 weighting titles over headings over body text, and returns snippets
whose matches sit between :data:`MARK_START` and :data:`MARK_END`: the text is the lessons',
not ours, so a page escapes it and only then turns the marks into ``<mark>``
(:meth:`SearchHit.snippet_html`). A query is user text, never FTS5 syntax: see
:func:`match_expression`.
"""

from __future__ import annotations

import functools
import hashlib
import html
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from satchel.content.errors import SatchelError, StoreError, UsageError
from satchel.content.lessons import NOT_LESSONS, structure
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.names import check_bundle, check_locale
from satchel.content.text import (
    MARK_END,
    MARK_START,
    MAX_SOURCE_BYTES,
    Kind,
    head_title,
    kind_of,
)

from .extracting import extract_texts
from .local import LocalStore, Ref
from .reader import StoredFile, missing_chunks
from .select import selected_files

INDEX_NAME = "search.sqlite"
INDEX_FORMAT = "3"  # bump when the schema or the text extraction changes: the file is rebuilt
# 2: GIFT blocks give their stems and offered choices, never their answers
# 3: docs.head_title, the title a table of contents shows (the viewer reads it from here)
MAX_QUERY_CHARS = 200
MAX_QUERY_WORDS = 12
MAX_RESULTS = 100
SNIPPET_TOKENS = 16
ELLIPSIS = "…"
# BM25 column weights: a word in a title counts ten body words, in a heading four.
WEIGHTS = (10.0, 4.0, 1.0)
# Apostrophes that sit inside words: Uzbek Latin oʻ gʻ (U+02BB) and the tutuq belgisi (U+02BC)
# are letters to Unicode but separators here, like ' and ’, so "oʻzbek", "o'zbek" and "o’zbek"
# all index and query as the tokens "o" "zbek" (a query keeps them together as a phrase).
TOKENIZER = "unicode61 remove_diacritics 2 separators '\u02bb\u02bc'"
_FTS_MODULE = "fts5"

_SCHEMA = f"""
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE docs (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, text_bytes INTEGER NOT NULL,
    head_title TEXT);
CREATE VIRTUAL TABLE docs_text USING {_FTS_MODULE}(title, headings, body, tokenize="{TOKENIZER}");
CREATE TABLE lines (
    bundle TEXT NOT NULL, locale TEXT NOT NULL, version INTEGER NOT NULL,
    manifest TEXT NOT NULL, title TEXT NOT NULL, current INTEGER NOT NULL,
    PRIMARY KEY (bundle, locale, version));
CREATE TABLE files (
    bundle TEXT NOT NULL, locale TEXT NOT NULL, version INTEGER NOT NULL, path TEXT NOT NULL,
    doc INTEGER NOT NULL REFERENCES docs(id), lesson TEXT,
    PRIMARY KEY (bundle, locale, version, path));
CREATE INDEX files_doc ON files(doc);
"""


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One page of a current version that matches, best first."""

    bundle: str
    locale: str
    version: int
    path: str
    title: str  # the page's own title ("" when it has none)
    lesson: str | None  # the lesson it belongs to, from the manifest's table of contents
    bundle_title: str
    snippet: str  # plain text; matches between MARK_START and MARK_END
    score: float  # higher is better (BM25, weighted)

    def snippet_html(self) -> str:
        """The snippet as HTML: everything escaped, then the marks become ``<mark>``."""
        return (
            html.escape(self.snippet, quote=True)
            .replace(MARK_START, "<mark>")
            .replace(MARK_END, "</mark>")
        )


@dataclass(frozen=True, slots=True)
class SearchResults:
    query: str  # the words searched for, as understood ("" when nothing searchable)
    hits: tuple[SearchHit, ...]
    total: int  # matching pages in all (hits is one page of them)


@dataclass(frozen=True, slots=True)
class UpdateResult:
    versions_added: int = 0  # versions (re)mapped in this update
    versions_removed: int = 0
    files_indexed: int = 0  # pages read and extracted now (content the index lacked)
    files_reused: int = 0  # pages whose content was already indexed (another version)
    files_skipped: int = 0  # not on this laptop, too large, or unreadable
    documents_removed: int = 0
    text_bytes: int = 0  # UTF-8 bytes of text extracted now
    rebuilt: bool = False  # the file was missing, of another format or corrupt


@dataclass(frozen=True, slots=True)
class IndexStats:
    documents: int  # distinct page contents indexed
    files: int  # (version, path) placements of them
    versions: int
    text_bytes: int  # UTF-8 bytes of title + headings + body over all documents
    file_bytes: int  # the index on disk (with its write-ahead log)


# -- queries ----------------------------------------------------------------------------------
def query_words(text: str) -> list[str]:
    """The words of a user's query: bounded, without control characters, each searchable."""
    text = text[: MAX_QUERY_CHARS * 4]
    # Control characters, our marks and lone surrogates (not encodable) become spaces.
    cleaned = "".join(
        " " if (c < " " or c in (MARK_START, MARK_END) or "\ud800" <= c <= "\udfff") else c
        for c in text
    )
    words: list[str] = []
    for word in cleaned[:MAX_QUERY_CHARS].split():
        if any(c.isalnum() for c in word):  # "*", "-", "(": nothing to look for
            words.append(word)
        if len(words) == MAX_QUERY_WORDS:
            break
    return words


def match_expression(text: str, *, prefix: bool = True) -> str | None:
    """A safe FTS5 MATCH expression for user text, or None when there is nothing to search.

    Every word becomes a quoted string (FTS5's own tokenizer splits it into a phrase, so
    "o'zbek" and "oʻzbek" mean the same), joined by FTS5's implicit AND; no operator, column
    filter or ``NEAR`` the user typed survives as syntax. The last word also matches as a
    prefix ("stat" finds "statistics") when ``prefix`` and it has two letters or more, and
    the query does not end with a space (the user finished that word).
    """
    words = query_words(text)
    if not words:
        return None
    parts = ['"' + word.replace('"', '""') + '"' for word in words]
    last = words[-1]
    if prefix and sum(c.isalnum() for c in last) >= 2 and not text[-1:].isspace():
        parts[-1] += " *"
    return " ".join(parts)


# -- the index --------------------------------------------------------------------------------
@functools.cache
def check_fts5() -> None:
    """Raise StoreError unless this Python's SQLite has FTS5 (CPython's builds do)."""
    db = sqlite3.connect(":memory:")
    try:
        db.execute(f'CREATE VIRTUAL TABLE probe USING {_FTS_MODULE}(x, tokenize="{TOKENIZER}")')
    except sqlite3.Error as exc:
        raise StoreError(
            f"search needs SQLite's FTS5, which this Python's SQLite {sqlite3.sqlite_version}"
            f" lacks ({exc}); use a Python whose sqlite3 module has FTS5 (CPython's builds do)"
        ) from None
    finally:
        db.close()


def content_key(entry: FileEntry, kind: Kind) -> str:
    """What a page's indexed text depends on: its kind and its chunks (so its bytes)."""
    h = hashlib.sha256(kind.encode("ascii"))
    for cid, length in entry.chunks:
        h.update(f";{cid}:{length}".encode("ascii"))
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Page:
    """A text page of a version, with its content key and the lesson it belongs to."""

    path: str
    key: str
    kind: Kind
    entry: FileEntry
    lesson: str | None


class SearchIndex:
    """The store's search index. ``write=False`` (a viewer) never creates or changes it.

    One connection, shared by threads under a lock; SQLite's write-ahead log lets readers in
    other processes search while an update runs, and they see its result only once it commits.
    """

    def __init__(self, path: Path, *, write: bool = False) -> None:
        check_fts5()
        self.path = path.absolute()  # a file: URI needs an absolute path (--store may be relative)
        self.write = write
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # the file a reader has open
        self._rebuilt = False
        if write:
            self._open_for_writing()

    @classmethod
    def of(cls, store: LocalStore, *, write: bool = False) -> SearchIndex:
        return cls(store.root / INDEX_NAME, write=write)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- opening ---------------------------------------------------------------------------
    def _connect(self, uri: str) -> sqlite3.Connection:
        db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 10000")
        db.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable at checkpoints, never torn
        return db

    def _format(self, db: sqlite3.Connection) -> str | None:
        try:
            row = db.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row else None

    def _open_for_writing(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._connect(self.path.as_uri())
            if self._format(db) == INDEX_FORMAT:
                self._db = db
                return
            db.close()
        except sqlite3.Error:
            pass  # not a database at all: rebuilt below
        except OSError as exc:
            raise StoreError(f"cannot open the search index {self.path}: {exc.strerror}") from None
        self._rebuild()

    def _rebuild(self) -> None:
        """A fresh, empty index in place of whatever was there (it is derived data)."""
        if self._db is not None:
            self._db.close()
            self._db = None
        try:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            db = self._connect(self.path.as_uri())
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
            db.execute("INSERT INTO meta VALUES ('format', ?)", (INDEX_FORMAT,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot create the search index {self.path}: {exc}") from None
        except OSError as exc:
            raise StoreError(
                f"cannot create the search index {self.path}: {exc.strerror}"
            ) from None
        self._db = db
        self._rebuilt = True

    def _reader(self) -> sqlite3.Connection | None:
        """The connection, opened read-only on first use and again when an update has
        replaced the file; None while there is no index (of this format)."""
        if self.write:
            return self._db
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        identity = (st.st_dev, st.st_ino) if st is not None else None
        if self._db is not None and identity == self._identity:
            return self._db
        if self._db is not None:
            self._db.close()
            self._db = None
        self._identity = identity
        if identity is None:
            return None
        try:
            db = self._connect(self.path.as_uri() + "?mode=ro")
        except sqlite3.Error:
            return None
        if self._format(db) != INDEX_FORMAT:
            db.close()  # another format, or not an index: the next update rebuilds it
            return None
        self._db = db
        return db

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(
                f"the search index {self.path.name} failed to {what} ({exc}); delete it and"
                " it is rebuilt at the next sync"
            ) from None

    # -- updating --------------------------------------------------------------------------
    def update(self, store: LocalStore) -> UpdateResult:
        """Bring the index in step with the store's kept versions (see the module's text)."""
        if not self.write:
            raise StoreError("this search index was opened read-only; open it with write=True")
        with self._lock, self._errors("update"):
            try:
                return self._update(store)
            except sqlite3.DatabaseError as exc:
                if not _damaged(exc):
                    raise
            self._rebuild()  # a damaged file: start again from the store
            return self._update(store)

    def _update(self, store: LocalStore) -> UpdateResult:
        db = self._db
        assert db is not None
        counts = _Counts(rebuilt=self._rebuilt)
        wanted: dict[tuple[str, str, int], tuple[Ref, str]] = {}
        for ref in store.refs():
            for version, manifest_id in ref.versions.items():
                wanted[(ref.bundle, ref.locale, version)] = (ref, manifest_id)
        db.execute("BEGIN IMMEDIATE")
        try:
            held = {
                (b, loc, v) for b, loc, v in db.execute("SELECT bundle, locale, version FROM lines")
            }
            for line in sorted(held - set(wanted)):
                db.execute("DELETE FROM files WHERE (bundle, locale, version) = (?, ?, ?)", line)
                db.execute("DELETE FROM lines WHERE (bundle, locale, version) = (?, ?, ?)", line)
                counts.versions_removed += 1
            for line, (ref, manifest_id) in sorted(wanted.items()):
                self._place(db, store, ref, line[2], manifest_id, counts)
            counts.documents_removed = self._drop_unused(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._rebuilt = False
        if counts.documents_removed:
            # Merge the full-text index's segments so deleted rows leave it, then hand the
            # freed pages back to the disk. A whole 'optimize' rewrites the index (4.5 s for
            # 100,000 pages): only when a tenth of it went; else a bounded 'merge' step.
            kept = db.execute("SELECT count(*) FROM docs").fetchone()[0]
            if counts.documents_removed * 10 >= kept:
                db.execute("INSERT INTO docs_text(docs_text) VALUES ('optimize')")
            else:
                db.execute("INSERT INTO docs_text(docs_text, rank) VALUES ('merge', 64)")
            db.executescript("PRAGMA incremental_vacuum;")  # execute() would free one page
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return counts.result()

    def _place(
        self,
        db: sqlite3.Connection,
        store: LocalStore,
        ref: Ref,
        version: int,
        manifest_id: str,
        counts: _Counts,
    ) -> None:
        """Map one version's pages on this laptop to their content, extracting what is new."""
        line = (ref.bundle, ref.locale, version)
        try:
            manifest = store.load_manifest(manifest_id)
        except SatchelError:
            return  # a manifest that no longer verifies: fsck's business; index the rest
        pages = searchable_pages(manifest, ref.only)
        held = dict(
            db.execute(
                "SELECT f.path, d.key FROM files f JOIN docs d ON d.id = f.doc"
                " WHERE (f.bundle, f.locale, f.version) = (?, ?, ?)",
                line,
            ).fetchall()
        )
        row = db.execute(
            "SELECT manifest, current FROM lines WHERE (bundle, locale, version) = (?, ?, ?)", line
        ).fetchone()
        current = int(version == ref.version)
        same = row is not None and row[0] == manifest_id
        if not same:
            counts.versions_added += 1
        if not same or row[1] != current:
            title = (manifest.meta.title if manifest.meta else "") or manifest.title
            db.execute(
                "INSERT OR REPLACE INTO lines VALUES (?, ?, ?, ?, ?, ?)",
                (*line, manifest_id, title, current),
            )
        docs = self._documents(db, store, manifest, pages, counts)
        placed: dict[str, tuple[int, str | None]] = {}
        for page in pages:
            got = docs.get(page.key)
            if got is None:
                counts.files_skipped += 1  # a selective or interrupted sync, or unreadable
                continue
            doc_id, first = got
            if first != page.path and held.get(page.path) != page.key:
                counts.files_reused += 1
            placed[page.path] = (doc_id, page.lesson)
        if same and held == {page.path: page.key for page in pages if page.path in placed}:
            return  # nothing changed for this version (the usual case for older versions)
        db.execute("DELETE FROM files WHERE (bundle, locale, version) = (?, ?, ?)", line)
        db.executemany(
            "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)",
            [(*line, path, doc_id, lesson) for path, (doc_id, lesson) in placed.items()],
        )

    @staticmethod
    def _documents(
        db: sqlite3.Connection,
        store: LocalStore,
        manifest: Manifest,
        pages: list[Page],
        counts: _Counts,
    ) -> dict[str, tuple[int, str | None]]:
        """Each page key's document id, and the path it was extracted from now (None when
        the index had it): content new to the index is read and extracted here, on every core
        when there is much of it. Keys left out are not on this laptop or not readable."""
        docs: dict[str, tuple[int, str | None]] = {}
        new: dict[str, Page] = {}
        for page in pages:
            if page.key in docs or page.key in new:
                continue
            row = db.execute("SELECT id FROM docs WHERE key = ?", (page.key,)).fetchone()
            if row is not None:
                docs[page.key] = (row[0], None)
            elif not missing_chunks(page.entry, store.objects):
                new[page.key] = page

        heads: dict[str, str | None] = {}

        def read(page: Page) -> tuple[bytes, Kind] | None:
            try:
                data = StoredFile(page.entry, store.objects, manifest).read(MAX_SOURCE_BYTES)
            except SatchelError:
                # Over the size limit (never read into memory), or a rotten chunk (fsck
                # --repair, then the next sync brings it back).
                return None
            heads[page.key] = head_title(page.kind, data)
            return data, page.kind

        for page, text in extract_texts(new.values(), read, count=len(new)):
            cursor = db.execute(
                "INSERT INTO docs (key, text_bytes, head_title) VALUES (?, ?, ?)",
                (page.key, text.size, heads.pop(page.key, None)),
            )
            doc_id = cursor.lastrowid
            assert doc_id is not None
            db.execute(
                "INSERT INTO docs_text (rowid, title, headings, body) VALUES (?, ?, ?, ?)",
                (doc_id, text.title, text.headings, text.body),
            )
            docs[page.key] = (doc_id, page.path)
            counts.files_indexed += 1
            counts.text_bytes += text.size
        return docs

    @staticmethod
    def _drop_unused(db: sqlite3.Connection) -> int:
        unused = [
            row[0]
            for row in db.execute(
                "SELECT id FROM docs"
                " WHERE NOT EXISTS (SELECT 1 FROM files WHERE files.doc = docs.id)"
            )
        ]
        db.executemany("DELETE FROM docs_text WHERE rowid = ?", [(i,) for i in unused])
        db.executemany("DELETE FROM docs WHERE id = ?", [(i,) for i in unused])
        return len(unused)

    # -- searching -------------------------------------------------------------------------
    def search(
        self,
        text: str,
        *,
        bundle: str | None = None,
        locale: str | None = None,
        limit: int = 10,
        offset: int = 0,
        snippets: bool = True,
    ) -> SearchResults:
        """Pages of the current versions matching every word of ``text``, best first.

        Snippets cost most of a search (FTS5 reads the page's text again to place them);
        ``snippets=False`` (suggestions as one types, say) leaves them empty.
        """
        words = query_words(text)
        expression = match_expression(text)
        limit = max(1, min(limit, MAX_RESULTS))
        offset = max(0, min(offset, 10_000))
        if expression is None or not _names_ok(bundle, locale):
            return SearchResults(" ".join(words), (), 0)
        where = ""
        params: list[object] = [expression]
        if bundle is not None:
            where += " AND f.bundle = ?"
            params.append(bundle)
        if locale is not None:
            where += " AND f.locale = ?"
            params.append(locale)
        weights = ", ".join(str(w) for w in WEIGHTS)
        sql = (
            f"WITH hits AS (SELECT rowid AS doc, bm25(docs_text, {weights}) AS rank"
            "  FROM docs_text WHERE docs_text MATCH ?)"
            " SELECT f.bundle, f.locale, f.version, f.path, f.lesson, l.title, hits.doc,"
            " hits.rank, count(*) OVER () FROM hits"
            " JOIN files f ON f.doc = hits.doc"
            " JOIN lines l ON (l.bundle, l.locale, l.version) = (f.bundle, f.locale, f.version)"
            f" WHERE l.current = 1{where}"
            " ORDER BY hits.rank, f.bundle, f.locale, f.path LIMIT ? OFFSET ?"
        )
        with self._lock, self._errors("search"):
            db = self._reader()
            if db is None:
                return SearchResults(" ".join(words), (), 0)
            try:
                hits, total = self._hits(db, sql, params, limit, offset, expression, snippets)
            except sqlite3.DatabaseError as exc:
                if not _damaged(exc):
                    raise
                return SearchResults(" ".join(words), (), 0)  # rebuilt at the next update
        return SearchResults(" ".join(words), tuple(hits), total)

    def _hits(
        self,
        db: sqlite3.Connection,
        sql: str,
        params: list[object],
        limit: int,
        offset: int,
        expression: str,
        snippets: bool,
    ) -> tuple[list[SearchHit], int]:
        rows = db.execute(sql, (*params, limit, offset)).fetchall()
        total = rows[0][8] if rows else self._count(db, sql, params) if offset else 0
        hits: list[SearchHit] = []
        shown: dict[int, tuple[str, str]] = {}  # doc -> (title, snippet)
        for b, loc, version, path, lesson, bundle_title, doc, rank, _total in rows:
            if doc not in shown:
                shown[doc] = (
                    self._snippet(db, expression, doc) if snippets else self._title(db, doc)
                )
            title, snippet = shown[doc]
            hits.append(
                SearchHit(b, loc, version, path, title, lesson, bundle_title, snippet, -rank)
            )
        return hits, total

    @staticmethod
    def _snippet(db: sqlite3.Connection, expression: str, doc: int) -> tuple[str, str]:
        """(title, snippet): from the body where the words are there, else from the headings,
        else the title (a viewer shows the title anyway; the body is where context is)."""
        marks = (MARK_START, MARK_END, ELLIPSIS, SNIPPET_TOKENS)
        row = db.execute(
            "SELECT title, snippet(docs_text, 2, ?, ?, ?, ?), snippet(docs_text, 1, ?, ?, ?, ?),"
            " snippet(docs_text, 0, ?, ?, ?, ?) FROM docs_text"
            " WHERE docs_text MATCH ? AND rowid = ?",
            (*marks, *marks, *marks, expression, doc),
        ).fetchone()
        if row is None:
            return "", ""
        title, *candidates = row
        body = candidates[0]
        return title, next((c for c in candidates if MARK_START in c), body)

    @staticmethod
    def _title(db: sqlite3.Connection, doc: int) -> tuple[str, str]:
        row = db.execute("SELECT title FROM docs_text WHERE rowid = ?", (doc,)).fetchone()
        return (row[0] if row else ""), ""

    @staticmethod
    def _count(db: sqlite3.Connection, sql: str, params: list[object]) -> int:
        row = db.execute(f"SELECT count(*) FROM ({sql})", (*params, -1, 0)).fetchone()
        return int(row[0]) if row else 0

    def titles(self, bundle: str, locale: str, version: int) -> dict[str, str | None]:
        """The title a table of contents shows (:func:`head_title`) of each page of one kept
        version, by path: one query for what the viewer would read from every page's first
        chunk (16 s for 100,000 pages). Empty when the index does not hold that version."""
        with self._lock, self._errors("read titles"):
            db = self._reader()
            if db is None:
                return {}
            return dict(
                db.execute(
                    "SELECT f.path, d.head_title FROM files f JOIN docs d ON d.id = f.doc"
                    " WHERE (f.bundle, f.locale, f.version) = (?, ?, ?)",
                    (bundle, locale, version),
                ).fetchall()
            )

    def stats(self) -> IndexStats:
        with self._lock, self._errors("report its size"):
            db = self._reader()
            if db is None:
                return IndexStats(0, 0, 0, 0, 0)
            documents, text_bytes = db.execute(
                "SELECT count(*), coalesce(sum(text_bytes), 0) FROM docs"
            ).fetchone()
            files = db.execute("SELECT count(*) FROM files").fetchone()[0]
            versions = db.execute("SELECT count(*) FROM lines").fetchone()[0]
        size = sum(
            os.path.getsize(f"{self.path}{s}")
            for s in ("", "-wal")
            if os.path.exists(f"{self.path}{s}")
        )
        return IndexStats(documents, files, versions, text_bytes, size)


@dataclass
class _Counts:
    versions_added: int = 0
    versions_removed: int = 0
    files_indexed: int = 0
    files_reused: int = 0
    files_skipped: int = 0
    documents_removed: int = 0
    text_bytes: int = 0
    rebuilt: bool = False

    def result(self) -> UpdateResult:
        return UpdateResult(
            self.versions_added,
            self.versions_removed,
            self.files_indexed,
            self.files_reused,
            self.files_skipped,
            self.documents_removed,
            self.text_bytes,
            self.rebuilt,
        )


def searchable_pages(manifest: Manifest, only: tuple[str, ...] | None) -> list[Page]:
    """The version's text pages a selection keeps, each with its lesson's title."""
    lessons = structure(manifest).lessons
    lesson_of: dict[str, str] = {lesson.entry: lesson.title for lesson in lessons}
    for lesson in lessons:
        for path in lesson.paths:
            lesson_of.setdefault(path, lesson.title)
    pages: list[Page] = []
    for entry in selected_files(manifest, only):
        kind = kind_of(entry.path)
        if kind is None:
            continue
        name = entry.path.rsplit("/", 1)[-1].lower()
        if name in NOT_LESSONS and entry.path not in lesson_of:
            continue  # LICENSE.md, CONTRIBUTING.md...: repository furniture, not lessons
        key = content_key(entry, kind)
        pages.append(Page(entry.path, key, kind, entry, lesson_of.get(entry.path)))
    return pages


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """The file is not a database or a damaged one (not: busy, full disk, read-only)."""
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _names_ok(bundle: str | None, locale: str | None) -> bool:
    """A filter names a possible bundle and locale (one that is not cannot match anything)."""
    try:
        if bundle is not None:
            check_bundle(bundle)
        if locale is not None:
            check_locale(locale)
    except UsageError:
        return False
    return True


def update_search_index(store: LocalStore) -> UpdateResult:
    """The hook to call after a version switch (sync, import) and after garbage collection,
    with the store's writer lock held: the index then covers exactly the kept versions."""
    with SearchIndex.of(store, write=True) as index:
        return index.update(store)
