"""Manifests: the signed description of one version of a bundle in one locale.

The ``signed`` part of a manifest envelope (see :mod:`satchel.content.signing`) is::

    {"_type": "manifest", "format": 1,
     "bundle": "intro-stats", "locale": "en", "version": 3, "parent_version": 2,
     "created": "2026-11-23T10:00:00Z", "title": "Introductory Statistics",
     "chunker": {"algorithm": "fastcdc2020", "min": ..., "avg": ..., "max": ...,
                 "normalization": 1, "seed": 0},
     "dictionaries": [["<sha256 hex>", 114688]],
     "files": [{"path": "media/a.png", "size": 1234, "mode": 420,
                "media_type": "image/png", "chunks": [["<sha256 hex>", 1234]]}, ...],
     "meta": {"title": ..., "subject": ..., "grade": ..., "description": ..., "locale": ...},
     "lessons": [{"title": "Sampling", "entry": "m1/index.html", "paths": [...]}, ...],
     "base": {"locale": "en", "version": 1}}

``meta``, ``lessons`` (see :mod:`satchel.content.lessons`) and ``base`` (a locale variant:
the base line's locale and the version it was made from) are optional and left out when
empty, so manifests written before them encode, hash and parse exactly as before.

Files are sorted by path; a file's chunk lengths add up to its size. ``dictionaries`` lists
the zstd dictionaries that some of the version's stored objects need (fetched like chunks,
before them). A publisher sends a *draft* (title, chunker, files) and the server adds bundle,
locale, version, parent, time and dictionaries.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from .chunking import ChunkerParams
from .errors import FormatError
from .names import parse_bundle_locale
from .objects import MAX_DICTIONARY
from .paths import check_publish_tree, check_tree
from .signing import Envelope, open_envelope
from .toc import BundleMeta, Lesson, parse_lessons, parse_meta

MANIFEST_FORMAT = 1
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_FILES = 1_000_000
MAX_TITLE = 500
MAX_DICTIONARIES = 8
ALLOWED_MODES = (0o644, 0o755)

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def check_chunk_id(value: object) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise FormatError(f"chunk id {str(value)[:80]!r} is not 64 lowercase hex digits")
    return value


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object, what: str) -> datetime:
    if not isinstance(text, str) or not _TIME.fullmatch(text):
        raise FormatError(f"{what} must be a UTC time like 2026-01-31T12:00:00Z")
    try:
        # The pattern fixed every field's digits; datetime() checks their ranges (strptime did
        # the same, at ten times the cost: records carry one time each).
        return datetime(
            int(text[0:4]),
            int(text[5:7]),
            int(text[8:10]),
            int(text[11:13]),
            int(text[14:16]),
            int(text[17:19]),
            tzinfo=UTC,
        )
    except ValueError:
        raise FormatError(
            f"{what} {text[:40]!r} is not a UTC time like 2026-01-31T12:00:00Z"
        ) from None


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a bundle version and the chunks that make it up, in order."""

    path: str
    size: int
    mode: int
    media_type: str
    chunks: tuple[tuple[str, int], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "mode": self.mode,
            "media_type": self.media_type,
            "chunks": [[cid, length] for cid, length in self.chunks],
        }

    @classmethod
    def from_json(cls, raw: object, max_chunk: int) -> FileEntry:
        if not isinstance(raw, dict):
            raise FormatError("file entry must be an object")
        path, size, mode = raw.get("path"), raw.get("size"), raw.get("mode")
        media_type, chunks = raw.get("media_type"), raw.get("chunks")
        shown = repr(str(path)[:120])
        if not isinstance(path, str):
            raise FormatError("file entry lacks a string 'path'")
        if type(size) is not int or size < 0:
            raise FormatError(f"file {shown} has an invalid size")
        if mode not in ALLOWED_MODES or type(mode) is not int:
            raise FormatError(
                f"file {shown} has mode {mode!r}; only regular files 0644 or 0755 are allowed"
                " (no links, devices or folders)"
            )
        if not isinstance(media_type, str) or not _MEDIA_TYPE.fullmatch(media_type):
            raise FormatError(f"file {shown} has an invalid media type")
        if not isinstance(chunks, list):
            raise FormatError(f"file {shown} lacks a chunk list")
        parsed: list[tuple[str, int]] = []
        total = 0
        for item in chunks:
            if not isinstance(item, list) or len(item) != 2:
                raise FormatError(f"file {shown} has a malformed chunk reference")
            cid, length = check_chunk_id(item[0]), item[1]
            if type(length) is not int or not 1 <= length <= max_chunk:
                raise FormatError(f"file {shown} has a chunk of invalid length {length!r}")
            total += length
            parsed.append((cid, length))
        if total != size:
            raise FormatError(f"file {shown}: chunk lengths add up to {total}, not its size {size}")
        return cls(path=path, size=size, mode=mode, media_type=media_type, chunks=tuple(parsed))


def _parse_files(raw: object, chunker: ChunkerParams) -> tuple[FileEntry, ...]:
    if not isinstance(raw, list):
        raise FormatError("'files' must be a list")
    if len(raw) > MAX_FILES:
        raise FormatError(f"{len(raw):,} files is over the limit of {MAX_FILES:,}")
    files = tuple(FileEntry.from_json(item, chunker.max_size) for item in raw)
    check_tree(f.path for f in files)
    lengths: dict[str, int] = {}
    for entry in files:
        for cid, length in entry.chunks:
            if lengths.setdefault(cid, length) != length:
                raise FormatError(f"chunk {cid[:16]}... is listed with two different lengths")
    for before, after in pairwise(files):
        if not before.path < after.path:
            raise FormatError(
                f"files are not sorted by path ({before.path!r} before {after.path!r})"
            )
    return files


def _check_title(title: object) -> str:
    if not isinstance(title, str) or len(title) > MAX_TITLE:
        raise FormatError(f"title must be a string of at most {MAX_TITLE} characters")
    return title


@dataclass(frozen=True, slots=True)
class ManifestDraft:
    """What a publisher proposes: the file list, before the server gives it a version."""

    title: str
    chunker: ChunkerParams
    files: tuple[FileEntry, ...]
    meta: BundleMeta | None = None
    lessons: tuple[Lesson, ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "title": self.title,
            "chunker": self.chunker.to_json(),
            "files": [f.to_json() for f in self.files],
        }
        _put_structure(doc, self.meta, self.lessons)
        return doc

    @classmethod
    def from_json(cls, raw: object) -> ManifestDraft:
        if not isinstance(raw, dict):
            raise FormatError("manifest draft must be an object")
        chunker = ChunkerParams.from_json(raw.get("chunker"))
        files = _parse_files(raw.get("files"), chunker)
        # A new version must fit on a USB stick and a Windows laptop; signed manifests made
        # before this rule are not held to it (Manifest.from_signed), so they still sync.
        check_publish_tree(f.path for f in files)
        meta, lessons = _get_structure(raw, files)
        return cls(
            title=_check_title(raw.get("title", "")),
            chunker=chunker,
            files=files,
            meta=meta,
            lessons=lessons,
        )

    def distinct_chunks(self) -> list[tuple[str, int]]:
        return distinct_chunks(self.files)


@dataclass(frozen=True, slots=True)
class Manifest:
    """A verified-shape manifest: one version of one bundle in one locale."""

    bundle: str
    locale: str
    version: int
    parent_version: int | None
    created: datetime
    title: str
    chunker: ChunkerParams
    files: tuple[FileEntry, ...]
    dictionaries: tuple[tuple[str, int], ...] = ()
    meta: BundleMeta | None = None
    lessons: tuple[Lesson, ...] = ()
    base: BaseRef | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_signed(self) -> dict[str, Any]:
        doc: dict[str, Any] = dict(self.extra)
        doc.update(
            {
                "_type": "manifest",
                "format": MANIFEST_FORMAT,
                "bundle": self.bundle,
                "locale": self.locale,
                "version": self.version,
                "parent_version": self.parent_version,
                "created": format_time(self.created),
                "title": self.title,
                "chunker": self.chunker.to_json(),
                "dictionaries": [[did, length] for did, length in self.dictionaries],
                "files": [f.to_json() for f in self.files],
            }
        )
        _put_structure(doc, self.meta, self.lessons)
        if self.base is not None:
            doc["base"] = self.base.to_json()
        return doc

    @classmethod
    def from_signed(cls, raw: dict[str, Any]) -> Manifest:
        if raw.get("_type") != "manifest":
            raise FormatError("document is not a manifest (its _type is not 'manifest')")
        fmt = raw.get("format")
        if fmt != MANIFEST_FORMAT:
            raise FormatError(
                f"manifest format {fmt!r} is not {MANIFEST_FORMAT}, the one this Satchel reads;"
                " update satchel"
            )
        version, parent = raw.get("version"), raw.get("parent_version")
        if type(version) is not int or version < 1:
            raise FormatError("manifest version must be a positive integer")
        if parent is not None and (type(parent) is not int or not 1 <= parent < version):
            raise FormatError("manifest parent_version must be null or an earlier version")
        bundle, locale = parse_bundle_locale(raw, "manifest")
        chunker = ChunkerParams.from_json(raw.get("chunker"))
        known = {"_type", "format", "bundle", "locale", "version", "parent_version", "created"}
        known |= {"title", "chunker", "files", "dictionaries", "meta", "lessons", "base"}
        files = _parse_files(raw.get("files"), chunker)
        meta, lessons = _get_structure(raw, files)
        return cls(
            bundle=bundle,
            locale=locale,
            version=version,
            parent_version=parent,
            created=parse_time(raw.get("created"), "manifest created"),
            title=_check_title(raw.get("title")),
            chunker=chunker,
            files=files,
            dictionaries=_check_lengths(_parse_dictionaries(raw.get("dictionaries")), files),
            meta=meta,
            lessons=lessons,
            base=BaseRef.from_json(raw["base"], locale, bundle) if "base" in raw else None,
            extra={k: v for k, v in raw.items() if k not in known},
        )

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def distinct_chunks(self) -> list[tuple[str, int]]:
        """Dictionaries first (chunks need them to decode), then every chunk once."""
        return distinct_chunks(self.files, self.dictionaries)

    def file(self, path: str) -> FileEntry:
        for entry in self.files:
            if entry.path == path:
                return entry
        raise KeyError(path)


@dataclass(frozen=True, slots=True)
class BaseRef:
    """A locale variant's origin: the base line's locale and the version it was made from."""

    locale: str
    version: int

    def to_json(self) -> dict[str, Any]:
        return {"locale": self.locale, "version": self.version}

    @classmethod
    def from_json(cls, raw: object, own_locale: str, bundle: str) -> BaseRef:
        if not isinstance(raw, dict) or set(raw) != {"locale", "version"}:
            raise FormatError("manifest base must be an object with locale and version")
        locale, version = raw["locale"], raw["version"]
        if type(version) is not int or version < 1:
            raise FormatError("manifest base version must be a positive integer")
        _bundle, locale = parse_bundle_locale({"bundle": bundle, "locale": locale}, "manifest base")
        if locale == own_locale:
            raise FormatError("a manifest cannot be a variant of its own locale")
        return cls(locale, version)


def _put_structure(
    doc: dict[str, Any], meta: BundleMeta | None, lessons: tuple[Lesson, ...]
) -> None:
    if meta is not None:
        doc["meta"] = meta.to_json()
    if lessons:
        doc["lessons"] = [lesson.to_json() for lesson in lessons]


def _get_structure(
    raw: dict[str, Any], files: tuple[FileEntry, ...]
) -> tuple[BundleMeta | None, tuple[Lesson, ...]]:
    meta = parse_meta(raw["meta"]) if "meta" in raw else None
    lessons = parse_lessons(raw["lessons"], (f.path for f in files)) if "lessons" in raw else ()
    return meta, lessons


def _parse_dictionaries(raw: object) -> tuple[tuple[str, int], ...]:
    if not isinstance(raw, list) or len(raw) > MAX_DICTIONARIES:
        raise FormatError(f"'dictionaries' must be a list of at most {MAX_DICTIONARIES}")
    out: list[tuple[str, int]] = []
    for item in raw:
        if not isinstance(item, list) or len(item) != 2:
            raise FormatError("malformed dictionary reference")
        did, length = check_chunk_id(item[0]), item[1]
        if type(length) is not int or not 1 <= length <= MAX_DICTIONARY:
            raise FormatError(f"dictionary length {length!r} is invalid")
        out.append((did, length))
    return tuple(out)


def _check_lengths(
    dictionaries: tuple[tuple[str, int], ...], files: tuple[FileEntry, ...]
) -> tuple[tuple[str, int], ...]:
    """One id has one length across dictionaries and chunks; no dictionary is listed twice."""
    lengths: dict[str, int] = {}
    for did, length in dictionaries:
        if did in lengths:
            raise FormatError(f"dictionary {did[:16]}... is listed twice")
        lengths[did] = length
    for entry in files:
        for cid, length in entry.chunks:
            if lengths.get(cid, length) != length:
                raise FormatError(f"object {cid[:16]}... is listed with two different lengths")
    return dictionaries


def distinct_chunks(
    files: tuple[FileEntry, ...], first: tuple[tuple[str, int], ...] = ()
) -> list[tuple[str, int]]:
    """Each id once, in order of first appearance (the order packs and bitmaps use)."""
    seen: set[str] = set()
    out: list[tuple[str, int]] = []
    for cid, length in first:
        if cid not in seen:
            seen.add(cid)
            out.append((cid, length))
    for entry in files:
        for cid, length in entry.chunks:
            if cid not in seen:
                seen.add(cid)
                out.append((cid, length))
    return out


def iter_chunk_refs(files: tuple[FileEntry, ...]) -> Iterator[tuple[FileEntry, int, str, int]]:
    """Every (file, offset, chunk id, length) in file order."""
    for entry in files:
        offset = 0
        for cid, length in entry.chunks:
            yield entry, offset, cid, length
            offset += length


def parse_manifest(data: bytes) -> tuple[Envelope, Manifest]:
    """Parse manifest envelope bytes (structure only; signatures are checked by the caller)."""
    env = open_envelope(data, what="manifest", max_bytes=MAX_MANIFEST_BYTES)
    return env, Manifest.from_signed(env.signed)
