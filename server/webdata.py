"""The data work behind the web pages, without HTTP: version diffs, whole-file hashes, the
browser's upload stream, and zip extraction with hostile-input checks.

Upload stream (``POST /web/api/publish/{bundle}/{locale}``, see docs/protocol.md)::

    u32 big-endian N | N bytes of JSON header | the bytes of each sent file, in header order
                                               (or, for a zip, the zip file's bytes)

The header lists every file of the new version: ``send: true`` files follow in the body,
``send: false`` files are ones the browser found unchanged (same SHA-256 and size as a file of
the latest version) and are taken from the server's store. Everything is checked before it
is written: paths, sizes, counts and each sent file's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import threading
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cachetools import LRUCache
from satchel.content.errors import FormatError, IntegrityError, UnsafePathError, UsageError
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.objects import verify_object
from satchel.content.paths import check_path, check_publish_tree
from satchel.sync.store import ChunkStore, store_lookup

GiB = 1024**3
MiB = 1024**2
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_TITLE = 500
MAX_NOTES = 2000


@dataclass(frozen=True, slots=True)
class WebLimits:
    """Caps on what one browser upload may ask of the server (tests pass smaller ones)."""

    max_upload_bytes: int = 4 * GiB  # file bytes in one upload request (folder or zip)
    max_files: int = 50_000  # files in one version sent from the browser
    max_header_bytes: int = 16 * MiB  # the JSON file list
    # Total extracted size of a zip: what one version sent from the browser may hold (the
    # same as max_upload_bytes unless an operator sets it apart).
    max_zip_uncompressed: int = 4 * GiB
    # Deflate tops out near 1032:1; real lessons (text, images, video) stay far below this.
    # A bigger ratio is a zip bomb, refused before it fills the disk: on each big entry, and
    # over the whole archive (1,000 entries each under the floor are still one bomb).
    max_zip_ratio: int = 200
    zip_ratio_floor: int = 1 * MiB  # entries (and archives) expanding to less are not checked
    # An upload that sends nothing for this long is dropped, as on the API: a stalled browser
    # must not hold a connection, a temp folder and a principal open.
    idle_seconds: float = 60.0


# -- diffs ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FileChange:
    path: str
    old_size: int | None  # None: added
    new_size: int | None  # None: removed


@dataclass(frozen=True, slots=True)
class VersionDiff:
    added: tuple[FileChange, ...]
    removed: tuple[FileChange, ...]
    changed: tuple[FileChange, ...]
    unchanged: int
    new_chunk_bytes: int  # bytes of chunks the newer version has and the older lacks

    @property
    def added_bytes(self) -> int:
        return sum(c.new_size or 0 for c in self.added)

    @property
    def removed_bytes(self) -> int:
        return sum(c.old_size or 0 for c in self.removed)


def diff_manifests(old: Manifest, new: Manifest) -> VersionDiff:
    """Files added, removed and changed from ``old`` to ``new`` (by content, not by time)."""
    before = {f.path: f for f in old.files}
    after = {f.path: f for f in new.files}
    added = tuple(FileChange(p, None, after[p].size) for p in sorted(after.keys() - before))
    removed = tuple(FileChange(p, before[p].size, None) for p in sorted(before.keys() - after))
    changed = []
    unchanged = 0
    for path in sorted(before.keys() & after.keys()):
        a, b = before[path], after[path]
        if a.chunks != b.chunks or a.mode != b.mode:
            changed.append(FileChange(path, a.size, b.size))
        else:
            unchanged += 1
    held = {cid for cid, _ in old.distinct_chunks()}
    new_bytes = sum(length for cid, length in new.distinct_chunks() if cid not in held)
    return VersionDiff(added, removed, tuple(changed), unchanged, new_bytes)


# -- whole-file hashes ------------------------------------------------------------------------
class FileHashes:
    """SHA-256 of whole files of published versions, read back from the chunk store.

    A manifest names chunks, not whole files; the browser hashes whole files. A one-chunk file's
    hash is its chunk id; longer files are read once and remembered by their chunk list, which
    is content-addressed, so an entry is never stale.
    """

    def __init__(self, store: ChunkStore, capacity: int = 200_000) -> None:
        self.store = store
        self.capacity = capacity
        self._known: LRUCache[tuple[tuple[str, int], ...], str] = LRUCache(capacity)
        self._lock = threading.Lock()

    def sha256(self, manifest: Manifest, entry: FileEntry) -> str:
        if not entry.chunks:
            return EMPTY_SHA256
        if len(entry.chunks) == 1:
            return entry.chunks[0][0]
        with self._lock:
            hit = self._known.get(entry.chunks)
        if hit is not None:
            return hit
        lookup = store_lookup(self.store, dict(manifest.dictionaries))
        h = hashlib.sha256()
        for cid, length in entry.chunks:
            h.update(verify_object(self.store.get(cid), cid, length, lookup))
        digest = h.hexdigest()
        with self._lock:
            self._known[entry.chunks] = digest
        return digest


@dataclass(frozen=True, slots=True)
class HeldFile:
    """A file the server already has: which manifest lists it, and its entry there."""

    manifest: Manifest
    entry: FileEntry


def held_files(
    hashes: FileHashes, manifests: Iterable[Manifest], wanted: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], HeldFile]:
    """(sha256, size) -> a file with that content in one of ``manifests``.

    Only files whose size someone asked about are hashed, so a check against a big course
    reads at most the files that could match.
    """
    sizes = {size for _, size in wanted}
    found: dict[tuple[str, int], HeldFile] = {}
    for manifest in manifests:
        for entry in manifest.files:
            if entry.size in sizes:
                key = (hashes.sha256(manifest, entry), entry.size)
                found.setdefault(key, HeldFile(manifest, entry))
    return found


def materialize(held: HeldFile, store: ChunkStore, root: Path, path: str) -> None:
    """Write a held file's content under ``root`` at ``path``, each chunk verified."""
    target = _inside(root, path)
    target.parent.mkdir(parents=True, exist_ok=True)
    lookup = store_lookup(store, dict(held.manifest.dictionaries))
    with open(target, "xb") as f:
        for cid, length in held.entry.chunks:
            f.write(verify_object(store.get(cid), cid, length, lookup))
    os.chmod(target, held.entry.mode)


def _inside(root: Path, path: str) -> Path:
    check_path(path)
    target = root / path
    if not target.resolve().is_relative_to(root.resolve()):
        raise UnsafePathError(f"{path!r} would land outside the upload folder")
    return target


# -- the upload stream --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class UploadFile:
    path: str
    size: int
    sha256: str | None
    send: bool
    gzip: bool = False  # sent gzip-compressed (the browser's CompressionStream)
    wire_size: int = -1  # bytes in the body; the file's size unless compressed

    @property
    def body_size(self) -> int:
        return self.wire_size if self.gzip else self.size


@dataclass(frozen=True, slots=True)
class UploadHeader:
    kind: str  # "folder" or "zip"
    title: str
    notes: str
    files: tuple[UploadFile, ...]  # kind "folder"
    zip_size: int  # kind "zip": bytes of the zip that follow the header

    @property
    def body_bytes(self) -> int:
        """Bytes that follow the header."""
        if self.kind == "zip":
            return self.zip_size
        return sum(f.body_size for f in self.files if f.send)


def _field(raw: dict[str, object], name: str, kind: type, default: object) -> object:
    value = raw.get(name, default)
    if value is not None and not isinstance(value, kind):
        raise FormatError(f"upload header field {name!r} must be a {kind.__name__}")
    return value


def _size(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise FormatError(f"{what} must be a whole number of bytes")
    return value


def parse_upload_header(raw: bytes, limits: WebLimits) -> UploadHeader:
    """Check an upload's JSON header; raises FormatError/UsageError saying what is wrong."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise FormatError("upload header is not valid JSON") from None
    if not isinstance(doc, dict):
        raise FormatError("upload header must be a JSON object")
    kind = doc.get("kind")
    if kind not in ("folder", "zip"):
        raise FormatError("upload header 'kind' must be 'folder' or 'zip'")
    title = str(_field(doc, "title", str, "") or "").strip()
    notes = str(_field(doc, "notes", str, "") or "").strip()
    if len(title) > MAX_TITLE:
        raise UsageError(f"the title is over {MAX_TITLE} characters")
    if len(notes) > MAX_NOTES:
        raise UsageError(f"the publish notes are over {MAX_NOTES} characters")
    files: list[UploadFile] = []
    zip_size = 0
    if kind == "zip":
        zip_size = _size(doc.get("zip_size"), "zip_size")
        if zip_size == 0:
            raise UsageError("the zip file is empty")
        if zip_size > limits.max_upload_bytes:
            raise UsageError(
                f"the zip is {zip_size:,} bytes, over this server's {limits.max_upload_bytes:,}"
                "-byte upload limit"
            )
    else:
        items = doc.get("files")
        if not isinstance(items, list):
            raise FormatError("upload header 'files' must be a list")
        if not items:
            raise UsageError("the folder has no files")
        if len(items) > limits.max_files:
            raise UsageError(
                f"{len(items):,} files is over this server's limit of {limits.max_files:,}"
            )
        for item in items:
            if not isinstance(item, dict):
                raise FormatError("each file in the upload header must be an object")
            path = item.get("path")
            if not isinstance(path, str):
                raise FormatError("a file in the upload header has no path")
            size = _size(item.get("size"), f"size of {path[:120]!r}")
            digest = item.get("sha256")
            if digest is not None and (
                not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef")
            ):
                raise FormatError(f"sha256 of {path[:120]!r} is not 64 lowercase hex digits")
            send = item.get("send", True)
            if not isinstance(send, bool):
                raise FormatError("'send' must be true or false")
            if not send and digest is None:
                raise FormatError(f"{path[:120]!r} is not sent, so it needs its sha256")
            encoding = item.get("encoding", "identity")
            if encoding not in ("identity", "gzip"):
                raise FormatError(f"encoding of {path[:120]!r} must be 'identity' or 'gzip'")
            gz = encoding == "gzip"
            wire = _size(item.get("wire_size"), f"wire_size of {path[:120]!r}") if gz else size
            if gz and (digest is None or not send):
                raise FormatError(f"{path[:120]!r} is sent compressed, so it needs its sha256")
            files.append(UploadFile(path, size, digest, send, gz, wire))
        check_publish_tree(f.path for f in files)
        sent = max(sum(f.size for f in files if f.send), sum(f.body_size for f in files if f.send))
        if sent > limits.max_upload_bytes:
            raise UsageError(
                f"the changed files add up to {sent:,} bytes, over this server's"
                f" {limits.max_upload_bytes:,}-byte upload limit"
            )
    return UploadHeader(
        kind=str(kind),
        title=title,
        notes=notes,
        files=tuple(files),
        zip_size=zip_size,
    )


class UploadStream:
    """Push the request body in with :meth:`feed`; files land under ``root``.

    The header is parsed as soon as it has arrived (:attr:`header`), so the caller can refuse
    the upload before the files come. Sent files are written to ``root/tree`` (a zip to
    ``root/upload.zip``) and each is checked against its declared size and SHA-256.
    """

    def __init__(self, root: Path, limits: WebLimits) -> None:
        self.root = root
        self.limits = limits
        self.tree = root / "tree"
        self.tree.mkdir()
        self.header: UploadHeader | None = None
        self.received = 0  # body bytes after the header
        self._buf = bytearray()
        self._queue: list[UploadFile] = []
        self._file: UploadFile | None = None
        self._out: BinaryIO | None = None
        self._left = 0
        self._hash: Any = None  # hashlib's hash object (its class is private)
        self._gunzip: Any = None  # a zlib decompressobj while a gzip file arrives
        self._written = 0

    @property
    def zip_path(self) -> Path:
        return self.root / "upload.zip"

    def feed(self, data: bytes) -> None:
        if self.header is None:
            self._buf += data
            if len(self._buf) < 4:
                return
            (length,) = struct.unpack(">I", self._buf[:4])
            if length > self.limits.max_header_bytes:
                raise UsageError(
                    f"upload header of {length:,} bytes is over the"
                    f" {self.limits.max_header_bytes:,}-byte limit"
                )
            if len(self._buf) < 4 + length:
                return
            self.header = parse_upload_header(bytes(self._buf[4 : 4 + length]), self.limits)
            rest = bytes(self._buf[4 + length :])
            self._buf.clear()
            if self.header.kind == "zip":
                self._queue = [UploadFile("upload.zip", self.header.zip_size, None, True)]
            else:
                self._queue = [f for f in self.header.files if f.send]
            self._queue.reverse()
            self._next()
            data = rest
        view = memoryview(data)
        while view:
            if self._file is None:
                raise FormatError("the upload has more bytes than its header announces")
            take = min(self._left, len(view))
            piece = view[:take]
            self._write(piece)
            view = view[take:]
            self._left -= take
            self.received += take
            if self._left == 0:
                self._finish()
                self._next()

    def _write(self, piece: memoryview) -> None:
        assert self._out is not None and self._file is not None
        data: bytes | memoryview = piece
        if self._gunzip is not None:
            room = self._file.size - self._written
            # Never more than the declared size comes out, whatever the stream claims.
            try:
                data = self._gunzip.decompress(piece, room + 1)
            except zlib.error:
                raise FormatError(f"{self._file.path!r} is not valid gzip data") from None
            if len(data) > room or self._gunzip.unused_data:
                raise FormatError(f"{self._file.path!r} expands beyond its declared size")
        self._written += len(data)
        self._out.write(data)
        if self._hash is not None:
            self._hash.update(data)

    def _next(self) -> None:
        while self._queue:
            f = self._queue.pop()
            assert self.header is not None
            target = self.zip_path if self.header.kind == "zip" else _inside(self.tree, f.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Closed in _finish, or in abort() when the upload fails half way.
            self._out = open(target, "xb")  # noqa: SIM115
            self._file, self._left, self._written = f, f.body_size, 0
            self._hash = hashlib.sha256() if f.sha256 is not None else None
            self._gunzip = zlib.decompressobj(wbits=31) if f.gzip else None
            if f.body_size == 0:
                self._finish()
                continue
            return
        self._file = None

    def _finish(self) -> None:
        f, out = self._file, self._out
        assert f is not None and out is not None
        out.close()
        self._out = None
        if self._gunzip is not None and not self._gunzip.eof:
            raise FormatError(f"{f.path!r}: its gzip stream is cut short or damaged")
        if self._written != f.size:
            raise FormatError(f"{f.path!r} is {self._written:,} bytes, not {f.size:,}")
        if self._hash is not None and self._hash.hexdigest() != f.sha256:
            raise IntegrityError(
                f"{f.path!r} arrived with another SHA-256 than the browser computed;"
                " the file changed while uploading? Upload again"
            )
        self._file = None

    def close(self) -> UploadHeader:
        """The body ended: every announced byte must have arrived."""
        if self.header is None:
            raise FormatError("the upload ended before its header was complete")
        if self._file is not None:
            self.abort()
            raise FormatError(
                f"the upload ended early: {self.header.body_bytes - self.received:,} of"
                f" {self.header.body_bytes:,} bytes did not arrive"
            )
        return self.header

    def abort(self) -> None:
        """Close the file being written (the caller removes the whole upload folder)."""
        if self._out is not None:
            self._out.close()
            self._out = None


# -- zip files --------------------------------------------------------------------------------
def extract_zip(archive: Path, dest: Path, limits: WebLimits) -> int:
    """Extract a teacher's zip into ``dest`` (empty); returns the number of files.

    Refused with a clear error: not a zip, encrypted entries, absolute or climbing paths
    (zip slip), links and other non-regular entries, unsafe or clashing names, too many
    files, a total over ``max_zip_uncompressed``, an entry bigger than it declared, and
    an archive or an entry compressed beyond ``max_zip_ratio`` (zip bombs: the ratio is
    checked over the whole archive too, since every entry may stay under the per-entry floor
    while together they expand a thousandfold). Nothing is written before these checks pass,
    and no entry writes more than it declared, so the disk holds at most the declared total.
    One folder wrapping everything
    (what "compress this folder" makes) is dropped; macOS ``__MACOSX/`` metadata is skipped.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError):
        raise FormatError("the upload is not a zip file (or it is damaged)") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        infos = [i for i in infos if not i.filename.startswith("__MACOSX/")]
        if not infos:
            raise UsageError("the zip holds no files")
        if len(infos) > limits.max_files:
            raise UsageError(
                f"the zip holds {len(infos):,} files, over this server's {limits.max_files:,}"
            )
        names = [_zip_name(i) for i in infos]
        prefix = _common_folder(names)
        paths = [n[len(prefix) :] for n in names]
        check_publish_tree(paths)
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_zip_uncompressed:
            raise UsageError(
                f"the zip expands to {declared:,} bytes, over this server's"
                f" {limits.max_zip_uncompressed:,}-byte limit"
            )
        packed = archive.stat().st_size
        if declared >= limits.zip_ratio_floor and declared > limits.max_zip_ratio * max(packed, 1):
            raise UsageError(
                f"the zip ({packed:,} bytes) expands to {declared:,} bytes,"
                f" {declared // max(packed, 1):,} times its size (over {limits.max_zip_ratio}:1"
                " for the whole archive): refused as a zip bomb"
            )
        for info in infos:
            if (
                info.file_size >= limits.zip_ratio_floor
                and info.file_size > limits.max_zip_ratio * max(info.compress_size, 1)
            ):
                ratio = info.file_size // max(info.compress_size, 1)
                raise UsageError(
                    f"{info.filename[:120]!r} expands {ratio:,} times"
                    f" (over {limits.max_zip_ratio}:1): refused as a zip bomb"
                )
        total = 0
        for info, path in zip(infos, paths, strict=True):
            target = _inside(dest, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with zf.open(info) as src, open(target, "xb") as out:
                    while piece := src.read(1024 * 1024):
                        written += len(piece)
                        total += len(piece)
                        # zipfile trusts the declared size; never write more than declared.
                        if written > info.file_size or total > limits.max_zip_uncompressed:
                            raise UsageError(
                                f"{info.filename[:120]!r} expands beyond its declared size"
                            )
                        out.write(piece)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
                raise FormatError(
                    f"{info.filename[:120]!r} cannot be read from the zip: {exc}"
                ) from None
            except RuntimeError as exc:  # zipfile's "encrypted, password required"
                raise UsageError(f"{info.filename[:120]!r}: {exc}") from None
            mode = info.external_attr >> 16
            os.chmod(target, 0o755 if mode & 0o111 else 0o644)
    return len(infos)


def _zip_name(info: zipfile.ZipInfo) -> str:
    name = info.filename
    shown = repr(name[:120])
    if info.flag_bits & 0x1:
        raise UsageError(f"{shown} is encrypted; upload a zip without a password")
    mode = info.external_attr >> 16
    # Unix zips keep the file type in the high bits; 0 (no type, e.g. Python's writestr) is a
    # plain file too. Links, devices and pipes are refused.
    if info.create_system == 3 and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        kind = "a link" if stat.S_ISLNK(mode) else "not a regular file"
        raise UnsafePathError(f"{shown} in the zip is {kind}")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafePathError(f"{shown} in the zip is an absolute path")
    if "\\" in name:
        raise UnsafePathError(f"{shown} in the zip has a backslash in its path")
    # macOS tools may store decomposed (NFD) names; bundle paths are NFC.
    return check_path(unicodedata.normalize("NFC", name))


def _common_folder(names: list[str]) -> str:
    """'course/' when every name starts with it, else ''."""
    first = names[0].split("/", 1)
    if len(first) < 2:
        return ""
    prefix = first[0] + "/"
    return prefix if all(n.startswith(prefix) for n in names) else ""
