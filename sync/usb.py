"""USB sync packs: a folder (a USB stick) that carries signed versions from one store to others.

Layout of ``STICK/``::

    satchel-usb.json          {"format": 2}
    index/<bundle>/<locale>.json   the exporting store's signed release index of each line
                              it carries
    manifests/<id>            signed manifest envelopes, named by their SHA-256
    packs/NNNNNN.pack         ordinary Satchel packs of stored objects, each at most 1 GiB
    have.json                 {"objects": [ids on the stick], "packs": [complete pack files]}

Nothing on a stick is trusted: :class:`UsbFetcher` is an ordinary :class:`Fetcher`, so an
import is a sync (index, manifest, one pack) through :class:`~satchel.sync.updater.Updater`,
which checks the publisher's key, every hash and switches atomically. A stick is read as
regular files only, each bounded before it is read: a link (to ``/dev/zero``, say), a FIFO, a
device or an oversized file in its place is refused unread (:func:`~satchel.sync.fsutil.
read_regular`). Pack files are walked with :class:`~satchel.sync.pack.PackReader`, reading
only the frame heads and seeking past the objects.

A pack file is written under a temp name and renamed once complete; ``have.json`` is then
replaced atomically. A stick pulled out mid-write holds no broken pack and its have-list names
only objects in complete packs; the next export removes leftovers and continues. A line's
index is replaced last, so it never names a version whose objects are not all on the stick.
Format 1 sticks (one index of every line, before per-line indexes) are upgraded by the next
export onto them and refused by readers with a reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from satchel.content.errors import (
    FormatError,
    IntegrityError,
    NotFoundError,
    StoreError,
    TruncatedError,
    UsageError,
)
from satchel.content.index import MAX_INDEX_BYTES, IndexEntry, parse_index
from satchel.content.manifest import MAX_MANIFEST_BYTES, check_chunk_id, parse_manifest
from satchel.content.names import check_bundle, check_locale

from .fetcher import IndexResponse, PackResponse, RangeResponse
from .fsutil import check_regular, fsync_dir, open_regular, read_regular, write_atomic
from .local import LocalStore
from .pack import HEAD_SIZE, MAGIC, PackReader, write_pack
from .plan import decode_want

USB_FORMAT = 2
OLD_USB_FORMATS = (1,)  # an export onto one upgrades it
MAX_PACK_FILE = 1 << 30  # 1 GiB: far under FAT32's 4 GB file limit
MAX_META = 64 * 1024  # satchel-usb.json
MAX_HAVE = 128 * 1024 * 1024  # have.json: ~70 bytes an object, ~1.8 million objects
MAX_STICK_LINES = 10_000  # lines one stick's index folder is read for
_PACK_SUFFIX = ".pack"
_TMP_PREFIX = ".tmp-"


# -- the stick's small files ---------------------------------------------------------------------
def _read(path: Path, limit: int, what: str) -> bytes:
    """A file of the stick, if it is a regular file within ``limit`` (FileNotFoundError passes)."""
    return read_regular(path, limit, f"{what} on the stick")


def _load_json(path: Path, what: str, limit: int) -> dict[str, Any]:
    try:
        value = json.loads(_read(path, limit, what))
    except (OSError, ValueError) as exc:
        raise FormatError(f"{what} on the stick is unreadable ({exc})") from None
    if not isinstance(value, dict):
        raise FormatError(f"{what} on the stick is not a JSON object")
    return value


def check_stick(path: Path, *, upgradable: bool = False) -> None:
    """Raise unless ``path`` is a Satchel USB folder this version reads (or, with
    ``upgradable``, one an export may upgrade)."""
    meta = path / "satchel-usb.json"
    if not os.path.lexists(meta):
        raise UsageError(f"{path} is not a Satchel USB folder (no satchel-usb.json)")
    fmt = _load_json(meta, "satchel-usb.json", MAX_META).get("format")
    if fmt == USB_FORMAT or (upgradable and fmt in OLD_USB_FORMATS):
        return
    if fmt in OLD_USB_FORMATS:
        raise FormatError(
            f"{path} was written by an older satchel (USB format {fmt}); export to it again"
        )
    raise FormatError(f"USB folder format {fmt!r} is not {USB_FORMAT}; update satchel")


def _index_file(path: Path, bundle: str, locale: str) -> Path:
    return path / "index" / check_bundle(bundle) / f"{check_locale(locale)}.json"


def stick_lines(path: Path) -> list[tuple[str, str]]:
    """The (bundle, locale) lines whose index the stick carries (names checked, bounded)."""
    base = path / "index"
    if not base.is_dir() or base.is_symlink():
        return []
    out = []
    for bundle_dir in sorted(base.iterdir())[:MAX_STICK_LINES]:
        if bundle_dir.is_symlink() or not bundle_dir.is_dir():
            continue
        for f in sorted(bundle_dir.iterdir())[:MAX_STICK_LINES]:
            if f.suffix != ".json":
                continue
            try:
                out.append((check_bundle(bundle_dir.name), check_locale(f.stem)))
            except UsageError:
                continue  # not a name we write: nothing to read
    return out[:MAX_STICK_LINES]


def read_line_index(path: Path, bundle: str, locale: str) -> bytes:
    file = _index_file(path, bundle, locale)
    what = f"the index of {bundle}/{locale}"
    try:
        return _read(file, MAX_INDEX_BYTES, what)
    except FileNotFoundError:
        raise NotFoundError(f"{path} carries no {bundle}/{locale}") from None
    except OSError as exc:
        raise FormatError(f"{what} on the stick is unreadable: {exc.strerror}") from None


@dataclass(frozen=True, slots=True)
class HaveList:
    objects: list[str]
    packs: list[str]


def read_have(path: Path) -> HaveList:
    """The stick's have-list (empty if it has none yet)."""
    file = path / "have.json"
    if not os.path.lexists(file):
        return HaveList([], [])
    raw = _load_json(file, "have.json", MAX_HAVE)
    objects, packs = raw.get("objects"), raw.get("packs")
    if not isinstance(objects, list) or not isinstance(packs, list):
        raise FormatError("have.json on the stick is malformed (objects and packs must be lists)")
    for name in packs:
        if not isinstance(name, str) or not _is_pack_name(name):
            raise FormatError(f"have.json on the stick names a bad pack file {name!r}")
    return HaveList([check_chunk_id(cid) for cid in objects], list(packs))


def _is_pack_name(name: str) -> bool:
    stem = name.removesuffix(_PACK_SUFFIX)
    return name.endswith(_PACK_SUFFIX) and len(stem) == 6 and stem.isdigit()


def _write_have(path: Path, have: HaveList, durable: bool) -> None:
    doc = {"objects": have.objects, "packs": have.packs}
    write_atomic(path / "have.json", json.dumps(doc, indent=0).encode(), durable=durable)


# -- export --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ExportResult:
    bundle: str
    locale: str
    version: int
    objects_written: int
    bytes_written: int  # pack file bytes written by this export
    pack_files: list[str]  # pack files written by this export
    objects_on_stick: int


def export_stick(
    store: LocalStore,
    bundle: str,
    locale: str,
    dest: Path,
    *,
    since: int | None = None,
    max_pack_bytes: int = MAX_PACK_FILE,
    durable: bool = True,
) -> ExportResult:
    """Write (or refresh) ``dest`` with the store's current version of ``bundle``/``locale``."""
    check_bundle(bundle)
    check_locale(locale)
    if not store.indexed_lines():
        raise StoreError(f"{store.root} holds no release index; run satchel sync first")
    ref = store.ref(bundle, locale)
    if ref is None:
        raise UsageError(f"{bundle}/{locale} is not in {store.root}; run satchel sync first")
    raw_index = store.last_index(bundle, locale)
    if raw_index is None:
        raise StoreError(f"{store.root} holds no release index of {bundle}/{locale}; sync first")
    _env, index = parse_index(raw_index)
    entry = index.entry(bundle, locale)
    if entry is None or entry.manifest != ref.manifest:
        raise StoreError(
            f"the store's release index does not name its current version {ref.version} of"
            f" {bundle}/{locale}; run satchel sync to finish the update first"
        )
    manifest = store.load_manifest(ref.manifest)
    manifest_data = store.manifest_bytes(ref.manifest)
    assert manifest_data is not None  # load_manifest read it
    skip: set[str] = set()
    if since is not None:
        base_id = ref.versions.get(since)
        if base_id is None:
            held_versions = ", ".join(str(v) for v in sorted(ref.versions))
            raise UsageError(
                f"--since {since}: version {since} of {bundle}/{locale} is not in the store"
                f" (have {held_versions})"
            )
        skip = {cid for cid, _ in store.load_manifest(base_id).distinct_chunks()}

    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot write to {dest}: {exc.strerror}") from None
    meta = dest / "satchel-usb.json"
    if meta.exists():
        check_stick(dest, upgradable=True)
    write_atomic(meta, json.dumps({"format": USB_FORMAT}).encode(), durable=durable)
    if os.path.lexists(dest / "index.json"):  # format 1's index of every line
        (dest / "index.json").unlink()
    old_index = _index_file(dest, bundle, locale)
    if os.path.lexists(old_index):
        try:
            old_serial = parse_index(_read(old_index, MAX_INDEX_BYTES, "a line index"))[1].serial
        except (FormatError, OSError):
            old_serial = None  # a damaged index (or a link, a pipe) is simply replaced
        if old_serial is not None and old_serial > index.serial:
            raise UsageError(
                f"the stick holds a newer release index (serial {old_serial}) than the store"
                f" ({index.serial}); sync the store first"
            )

    packs = dest / "packs"
    packs.mkdir(exist_ok=True)
    have = read_have(dest)
    _tidy_packs(packs, set(have.packs))
    held = set(have.objects)
    todo = [cid for cid, _ in manifest.distinct_chunks() if cid not in skip and cid not in held]
    lacking = [cid for cid in todo if not store.objects.has(cid)]
    if lacking:
        raise StoreError(
            f"the store lacks {len(lacking)} objects of {bundle}/{locale} version {ref.version};"
            " run satchel sync (or satchel fsck) first"
        )

    write_atomic(dest / "manifests" / ref.manifest, manifest_data, durable=durable)
    written: list[str] = []
    total = 0
    for group in _groups(store, todo, max_pack_bytes):
        name = _next_pack_name(have.packs)
        total += _write_pack_file(store, packs, name, group, durable)
        have = HaveList(have.objects + group, [*have.packs, name])
        _write_have(dest, have, durable)
        written.append(name)
    _index_file(dest, bundle, locale).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(_index_file(dest, bundle, locale), raw_index, durable=durable)
    return ExportResult(
        bundle, locale, ref.version, len(todo), total, written, len(set(have.objects))
    )


def _tidy_packs(packs: Path, listed: set[str]) -> None:
    """Remove what an interrupted export left: temp files and packs the have-list lacks."""
    for item in packs.iterdir():
        if item.name.startswith(_TMP_PREFIX) or (
            _is_pack_name(item.name) and item.name not in listed
        ):
            item.unlink()


def _groups(store: LocalStore, todo: list[str], limit: int) -> Iterator[list[str]]:
    """Split ``todo`` (in order) into packs of at most ``limit`` bytes each."""
    group: list[str] = []
    size = len(MAGIC) + HEAD_SIZE
    for cid in todo:
        frame = HEAD_SIZE + store.objects.stored_size(cid)
        if group and size + frame > limit:
            yield group
            group, size = [], len(MAGIC) + HEAD_SIZE
        group.append(cid)
        size += frame
    if group:
        yield group


def _next_pack_name(listed: list[str]) -> str:
    last = max((int(n.removesuffix(_PACK_SUFFIX)) for n in listed), default=0)
    return f"{last + 1:06d}{_PACK_SUFFIX}"


def _write_pack_file(
    store: LocalStore, packs: Path, name: str, group: list[str], durable: bool
) -> int:
    tmp = packs / f"{_TMP_PREFIX}{name}.part"
    size = 0
    try:
        with open(tmp, "wb") as f:
            for piece in write_pack((cid, store.objects.get(cid)) for cid in group):
                f.write(piece)
                size += len(piece)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, packs / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(packs)
    return size


# -- reading a stick -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Loc:
    file: Path
    offset: int
    length: int


def index_pack_file(file: Path) -> dict[str, _Loc]:
    """Where each object of a pack file is, found by reading only the frame heads."""
    out: dict[str, _Loc] = {}
    name = file.name
    reader = PackReader()
    try:
        # Unbuffered: a buffer would read ahead into the objects the walk seeks past.
        with open_regular(file, f"pack file {name} on the stick", buffered=False) as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(len(MAGIC) + HEAD_SIZE)
            while True:
                for head in reader.feed_heads(data):
                    out.setdefault(head.chunk_id, _Loc(file, head.offset, head.length))
                if reader.done:
                    break
                if reader.to_skip:
                    if reader.bytes_read + reader.to_skip > size:
                        raise FormatError(
                            f"pack file {name} on the stick is cut short or damaged at byte"
                            f" {reader.bytes_read:,}; export again"
                        )
                    f.seek(reader.to_skip, os.SEEK_CUR)
                    reader.skip(reader.to_skip)
                data = f.read(HEAD_SIZE)
                if not data:
                    reader.close()  # raises: the trailer is missing
            if f.read(1):
                raise FormatError(f"pack file {name} on the stick has data after its end")
    except TruncatedError:
        raise FormatError(
            f"pack file {name} on the stick is cut short after {reader.frames} objects"
            f" ({reader.bytes_read:,} bytes); the stick is damaged, export again"
        ) from None
    except FormatError as exc:
        if str(exc).startswith(f"pack file {name} "):
            raise
        raise FormatError(
            f"pack file {name} on the stick: {exc}; the stick is damaged, export again"
        ) from None
    except OSError as exc:
        raise FormatError(f"pack file {name} on the stick is unreadable: {exc.strerror}") from None
    return out


class UsbFetcher:
    """A :class:`~satchel.sync.fetcher.Fetcher` over a folder written by :func:`export_stick`."""

    def __init__(self, path: Path) -> None:
        check_stick(path)
        self.path = path
        self._objects: dict[str, _Loc] | None = None

    def _index_objects(self) -> dict[str, _Loc]:
        if self._objects is None:
            objects: dict[str, _Loc] = {}
            for name in read_have(self.path).packs:
                for cid, loc in index_pack_file(self.path / "packs" / name).items():
                    objects.setdefault(cid, loc)
            self._objects = objects
        return self._objects

    def fetch_index(self, bundle: str, locale: str, etag: str | None) -> IndexResponse:
        return IndexResponse(read_line_index(self.path, bundle, locale), None)

    def _manifest_data(self, manifest_id: str) -> bytes:
        file = self.path / "manifests" / check_chunk_id(manifest_id)
        try:
            return _read(file, MAX_MANIFEST_BYTES, f"manifest {manifest_id[:16]}...")
        except FileNotFoundError:
            raise NotFoundError(f"manifest {manifest_id[:16]}... is not on the stick") from None
        except OSError as exc:
            raise FormatError(f"manifest on the stick is unreadable: {exc.strerror}") from None

    def fetch_manifest(self, manifest_id: str, base: str | None = None) -> bytes:
        return b"\x00" + self._manifest_data(manifest_id)  # a RAW stored object

    def _plan(self, manifest_id: str, want: bytes) -> list[tuple[str, _Loc]]:
        data = self._manifest_data(manifest_id)
        if hashlib.sha256(data).hexdigest() != manifest_id:
            raise IntegrityError(f"manifest {manifest_id[:16]}... on the stick does not match")
        manifest = parse_manifest(data)[1]
        wanted = decode_want(manifest.distinct_chunks(), want)
        objects = self._index_objects()
        lacking = sum(1 for cid, _ in wanted if cid not in objects)
        if lacking:
            raise IntegrityError(
                f"the stick lacks {lacking} of the {len(wanted)} objects this store needs for"
                f" {manifest.bundle}/{manifest.locale} version {manifest.version} (a damaged stick,"
                " or one exported with --since a version this store lacks)"
            )
        return [(cid, objects[cid]) for cid, _ in wanted]

    @staticmethod
    def _size(plan: list[tuple[str, _Loc]]) -> int:
        return len(MAGIC) + sum(HEAD_SIZE + loc.length for _, loc in plan) + HEAD_SIZE

    def fetch_pack(self, manifest_id: str, want: bytes, base: str | None = None) -> PackResponse:
        plan = self._plan(manifest_id, want)
        return PackResponse(self._size(plan), write_pack(_read_objects(plan)))

    def fetch_delta(self, base: str, manifest_id: str) -> PackResponse:
        raise NotFoundError("a USB stick carries no ready-made deltas")

    def fetch_range(self, cid: str, start: int, end: int | None = None) -> RangeResponse:
        raise NotFoundError("a USB stick serves no byte ranges")

    def delta_size(self, base: str, manifest_id: str) -> int:
        raise NotFoundError("a USB stick carries no ready-made deltas")

    def pack_size(self, manifest_id: str, want: bytes, base: str | None = None) -> int:
        return self._size(self._plan(manifest_id, want))


def _read_objects(plan: list[tuple[str, _Loc]]) -> Iterator[tuple[str, bytes]]:
    for cid, loc in plan:
        try:
            with open_regular(loc.file, f"pack file {loc.file.name} on the stick") as f:
                f.seek(loc.offset)
                obj = f.read(loc.length)
        except OSError as exc:
            raise FormatError(
                f"pack file {loc.file.name} on the stick is unreadable: {exc.strerror}"
            ) from None
        if len(obj) != loc.length:
            raise FormatError(f"pack file {loc.file.name} on the stick changed while being read")
        yield cid, obj


# -- what is on a stick --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StickLine:
    entry: IndexEntry
    objects: int  # distinct objects of this version
    objects_on_stick: int


@dataclass(frozen=True, slots=True)
class StickListing:
    lines: list[StickLine]
    objects: int  # object ids in have.json
    pack_files: int
    pack_bytes: int


def stick_entries(path: Path) -> list[IndexEntry]:
    """The index entries of the lines on the stick whose manifest is there too."""
    check_stick(path)
    found = []
    for bundle, locale in stick_lines(path):
        entry = parse_index(read_line_index(path, bundle, locale))[1].line
        if (entry.bundle, entry.locale) != (bundle, locale):
            raise FormatError(f"the index of {bundle}/{locale} on the stick is about another line")
        manifest = path / "manifests" / entry.manifest
        try:
            st = os.lstat(manifest)
        except FileNotFoundError:
            continue  # a line the stick does not carry
        except OSError as exc:
            raise FormatError(f"a manifest on the stick is unreadable: {exc.strerror}") from None
        check_regular(st, MAX_MANIFEST_BYTES, f"manifest {entry.manifest[:16]}... on the stick")
        found.append(entry)
    return found


def list_stick(path: Path) -> StickListing:
    """What the stick carries (read without a store; nothing here is verified)."""
    entries = stick_entries(path)
    have = read_have(path)
    held = set(have.objects)
    lines = []
    for entry in entries:
        data = _read(path / "manifests" / entry.manifest, MAX_MANIFEST_BYTES, "a manifest")
        distinct = [cid for cid, _ in parse_manifest(data)[1].distinct_chunks()]
        lines.append(StickLine(entry, len(distinct), sum(1 for c in distinct if c in held)))
    size = 0
    for name in have.packs:
        try:
            st = os.lstat(path / "packs" / name)
        except OSError:
            raise FormatError(f"pack file {name} listed in have.json is missing") from None
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(f"pack file {name} on the stick is not a regular file")
        size += st.st_size
    return StickListing(lines, len(held), len(have.packs), size)
