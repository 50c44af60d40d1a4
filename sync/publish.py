"""Publishing, the teacher's side: chunk, learn what the server lacks, upload only that.

:class:`Publisher` chunks and hashes the folder, refuses a malformed exercise block in a
Markdown lesson (:func:`check_exercises`), sends the draft, learns which objects the server
lacks, then compresses and uploads only those, as one pack stream, and commits.
Compression runs on every core while memory stays bounded by a window of in-flight chunks.
The server's half (assembling and signing the version) is :mod:`satchel.sync.release`.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from satchel.content import canonical
from satchel.content.chunking import Chunker, chunk_id
from satchel.content.errors import IntegrityError
from satchel.content.exercises import LESSON_SUFFIXES, MAX_MARKDOWN_BYTES, check_lesson_exercises
from satchel.content.lessons import load as load_structure
from satchel.content.manifest import FileEntry
from satchel.content.names import check_bundle, check_locale
from satchel.content.objects import (
    DEFAULT_LEVEL,
    decode_object,
    encode_object,
    looks_compressible,
    train_dictionary,
)
from satchel.content.tree import ScannedTree, SelectedFiles, scan_tree

from .pack import write_pack
from .plan import decode_want

# Training needs a few times the dictionary's size in samples to pay for itself.
DICT_MIN_SAMPLES = 512 * 1024
DICT_MAX_SAMPLES = 16 * 1024 * 1024


# -- teacher side --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BeginResponse:
    upload_id: str
    want: bytes  # bitmap over the draft's distinct chunks: what the server lacks
    dictionary: tuple[str, int] | None  # the bundle line's current dictionary, if any


class PublishTarget(Protocol):
    """Where a publisher sends a version (HTTP in satchel.clients.http; in-memory in tests)."""

    def begin(
        self,
        bundle: str,
        locale: str,
        draft: bytes,
        from_locale: str | None = None,
        base_version: int | None = None,
    ) -> BeginResponse:
        """``from_locale``: publish a locale variant of the line (bundle, from_locale),
        made from its version ``base_version`` (default: what the variant last said)."""
        ...

    def fetch_object(self, cid: str) -> bytes: ...

    def upload(self, upload_id: str, pack: Iterator[bytes], length: int | None) -> None: ...

    def commit(self, upload_id: str, notes: str) -> int: ...


@dataclass(frozen=True, slots=True)
class PublishResult:
    version: int
    files: int
    size: int
    objects_total: int
    objects_uploaded: int
    raw_bytes_uploaded: int
    pack_bytes: int


Progress = Callable[[int, int], None]
"""Called with (raw bytes compressed and sent so far, raw bytes to send in all)."""


def choose_dictionary(scan: ScannedTree, wanted: list[tuple[str, int]]) -> tuple[str, bytes] | None:
    """Train a dictionary on the text-like chunks to upload, if there are enough of them."""
    samples: list[bytes] = []
    total = 0
    for cid, _length in wanted:
        data = scan.sources[cid].read()
        if looks_compressible(data):
            samples.append(data)
            total += len(data)
            if total >= DICT_MAX_SAMPLES:
                break
    if total < DICT_MIN_SAMPLES:
        return None
    trained = train_dictionary(samples)
    if trained is None:
        return None
    return chunk_id(trained), trained


def encode_many(
    scan: ScannedTree,
    wanted: list[tuple[str, int]],
    *,
    dictionary: tuple[str, bytes] | None,
    level: int = DEFAULT_LEVEL,
    workers: int | None = None,
    window: int = 64,
) -> Iterator[tuple[str, bytes, int]]:
    """(id, stored object, raw length) for each wanted chunk, in order, compressed in parallel.

    At most ``window`` chunks are in flight, so memory does not grow with the course.
    """

    def job(cid: str, length: int) -> tuple[str, bytes, int]:
        data = scan.sources[cid].read()
        return cid, encode_object(data, level=level, dictionary=dictionary), length

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        pending: deque[Future[tuple[str, bytes, int]]] = deque()
        items = iter(wanted)
        for cid, length in items:
            pending.append(pool.submit(job, cid, length))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def check_exercises(source: Path, files: Iterable[FileEntry]) -> None:
    """Refuse a malformed ```gift block in a Markdown lesson before anything is sent: the
    FormatError names the file, the line and what is wrong. Lessons over the size bound hold
    no exercises (satchel.content.exercises), so they are not read."""
    for entry in files:
        if entry.path.lower().endswith(LESSON_SUFFIXES) and entry.size <= MAX_MARKDOWN_BYTES:
            with (source / entry.path).open("rb") as f:
                check_lesson_exercises(entry.path, f.read(MAX_MARKDOWN_BYTES + 1))


class Publisher:
    """Publishes a folder as a new version, sending only what the server lacks."""

    def __init__(
        self, target: PublishTarget, *, chunker: Chunker | None = None, level: int = DEFAULT_LEVEL
    ) -> None:
        self.target = target
        self.chunker = chunker or Chunker()
        self.level = level

    def publish(
        self,
        source: Path,
        *,
        bundle: str,
        locale: str,
        title: str,
        notes: str = "",
        progress: Progress | None = None,
        from_locale: str | None = None,
        base_version: int | None = None,
        selected: SelectedFiles | None = None,
    ) -> PublishResult:
        """Publish ``source`` (``selected``: :func:`~satchel.content.tree.select_files` of it,
        when the caller already has it)."""
        check_bundle(bundle)
        check_locale(locale)
        if from_locale is not None:
            check_locale(from_locale)
        scan = scan_tree(source, title=title, chunker=self.chunker, selected=selected)
        check_exercises(source, scan.draft.files)
        # The table of contents travels in the signed manifest (satchel.toml or derived).
        found = load_structure(
            source, [f.path for f in scan.draft.files], title=title, locale=locale
        )
        scan = ScannedTree(
            replace(scan.draft, meta=found.meta, lessons=found.lessons), scan.sources
        )
        distinct = scan.draft.distinct_chunks()
        draft = canonical.encode(scan.draft.to_json())
        begin = (
            self.target.begin(bundle, locale, draft)
            if from_locale is None and base_version is None
            else self.target.begin(bundle, locale, draft, from_locale, base_version)
        )
        wanted = decode_want(distinct, begin.want)
        dictionary = self._dictionary(scan, wanted, begin.dictionary)
        total = sum(length for _, length in wanted)
        sent_raw = 0
        pack_bytes = 0
        if wanted:
            counter = [0, 0]

            def objects() -> Iterator[tuple[str, bytes]]:
                if dictionary is not None and begin.dictionary is None:
                    # A new dictionary travels first, so the server can check what uses it.
                    yield dictionary[0], encode_object(dictionary[1], level=self.level)
                for cid, obj, length in encode_many(
                    scan, wanted, dictionary=dictionary, level=self.level
                ):
                    counter[0] += length
                    if progress is not None:
                        progress(counter[0], total)
                    yield cid, obj

            def measured(pieces: Iterator[bytes]) -> Iterator[bytes]:
                for piece in pieces:
                    counter[1] += len(piece)
                    yield piece

            self.target.upload(begin.upload_id, measured(write_pack(objects())), None)
            sent_raw, pack_bytes = counter
        version = self.target.commit(begin.upload_id, notes)
        return PublishResult(
            version=version,
            files=len(scan.draft.files),
            size=scan.size,
            objects_total=len(distinct),
            objects_uploaded=len(wanted),
            raw_bytes_uploaded=sent_raw,
            pack_bytes=pack_bytes,
        )

    def _dictionary(
        self,
        scan: ScannedTree,
        wanted: list[tuple[str, int]],
        current: tuple[str, int] | None,
    ) -> tuple[str, bytes] | None:
        if current is not None:
            # Reuse the line's dictionary: clients already have it, so an update stays small.
            dict_id, length = current
            data = decode_object(self.target.fetch_object(dict_id), length)
            if chunk_id(data) != dict_id:
                raise IntegrityError("the server's dictionary does not match its id")
            return dict_id, data
        return choose_dictionary(scan, wanted)
