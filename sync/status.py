"""What a store holds, read offline: for ``satchel status`` and the viewer.

For each bundle line: the current version, the versions kept, the size of the current tree,
whether every object of it is on disk (of the selection, after ``sync --only``) and what is
not on this laptop, and whether the last release index this store accepted names a newer
version (a sync that stopped at a data budget, or was cut, leaves one pending) with what it
would still cost when that is known offline (its manifest is here), and how far a download of
it got: a sync that was cut or stopped keeps every object it verified, so "1,174 of 7,424
objects here" is true progress. A line's first download, cut before it completed, has no
version yet and is listed apart (:attr:`StoreStatus.downloading`).
"""

from __future__ import annotations

from dataclasses import dataclass

from satchel.content.errors import SatchelError
from satchel.content.index import IndexEntry, parse_index
from satchel.content.manifest import Manifest

from .local import LocalStore, Ref
from .plan import missing
from .select import needed_objects, selected_files
from .store import Snapshot


@dataclass(frozen=True, slots=True)
class LineStatus:
    bundle: str
    locale: str
    version: int
    versions: tuple[int, ...]
    title: str
    files: int
    size: int
    objects: int
    objects_missing: int
    pending_version: int | None  # a newer version named by the last accepted index
    only: tuple[str, ...] | None = None  # selective sync: its selectors
    files_here: int = 0  # files whose every chunk is on this laptop
    bytes_not_here: int = 0  # bytes of the current version's files that are not
    update_bytes: int | None = None  # chunk bytes the pending version still needs, if known
    pending_here: int | None = None  # objects of the pending version already here, if known
    pending_objects: int | None = None  # objects the pending version needs, if known


@dataclass(frozen=True, slots=True)
class Download:
    """A line's first download, started (its manifest is here) but not complete."""

    bundle: str
    locale: str
    version: int
    objects_here: int
    objects: int
    bytes_missing: int


@dataclass(frozen=True, slots=True)
class StoreStatus:
    lines: tuple[LineStatus, ...]
    objects: int
    stored_bytes: int
    publisher: str | None  # fingerprint of the pinned key
    downloading: tuple[Download, ...] = ()


@dataclass(frozen=True, slots=True)
class _Progress:
    here: int  # objects of the version on this laptop
    objects: int  # objects it needs (of the selection)
    bytes_missing: int  # raw bytes of those not here


def _progress(
    store: LocalStore, held: Snapshot, ref: Ref | None, entry: IndexEntry | None
) -> _Progress | None:
    """How much of a newer version is here, if its manifest is (else only a dry run tells)."""
    if entry is None or (ref is not None and entry.version <= ref.version):
        return None
    try:
        manifest = store.load_manifest(entry.manifest)
    except SatchelError:
        return None  # not fetched yet: only a dry run (satchel sync --dry-run) can tell
    wanted = needed_objects(manifest, selected_files(manifest, ref.only if ref else None))
    absent = missing(wanted, held)
    return _Progress(len(wanted) - len(absent), len(wanted), sum(n for _, n in absent))


def _presence(held: Snapshot, manifest: Manifest) -> tuple[int, int]:
    """(files whose chunks are all here, bytes of the files that are not)."""
    here = absent = 0
    for entry in manifest.files:
        if all(cid in held.ids for cid, _ in entry.chunks):
            here += 1
        else:
            absent += entry.size
    return here, absent


def store_status(store: LocalStore) -> StoreStatus:
    latest: dict[tuple[str, str], IndexEntry] = {}
    for bundle, locale in store.indexed_lines():
        raw = store.last_index(bundle, locale)
        try:
            if raw is not None:
                latest[(bundle, locale)] = parse_index(raw)[1].line
        except SatchelError:
            continue  # a damaged index file only loses that line's "pending" column
    sizes = store.objects.sizes()  # one walk: what status shows, and what is here
    held = Snapshot(frozenset(sizes))
    lines = []
    refs = store.refs()
    for ref in refs:
        manifest = store.load_manifest(ref.manifest)
        wanted = needed_objects(manifest, selected_files(manifest, ref.only))
        newest = latest.get((ref.bundle, ref.locale))
        here, absent = _presence(held, manifest)
        pending = _progress(store, held, ref, newest)
        lines.append(
            LineStatus(
                bundle=ref.bundle,
                locale=ref.locale,
                version=ref.version,
                versions=tuple(sorted(ref.versions)),
                title=manifest.title,
                files=len(manifest.files),
                size=manifest.size,
                objects=len(wanted),
                objects_missing=len(missing(wanted, held)),
                pending_version=(
                    newest.version if newest is not None and newest.version > ref.version else None
                ),
                only=ref.only,
                files_here=here,
                bytes_not_here=absent,
                update_bytes=pending.bytes_missing if pending else None,
                pending_here=pending.here if pending else None,
                pending_objects=pending.objects if pending else None,
            )
        )
    lines_held = {(ref.bundle, ref.locale) for ref in refs}
    downloading = []
    for (bundle, locale), entry in sorted(latest.items()):
        started = None if (bundle, locale) in lines_held else _progress(store, held, None, entry)
        if started is not None:
            downloading.append(
                Download(
                    bundle,
                    locale,
                    entry.version,
                    started.here,
                    started.objects,
                    started.bytes_missing,
                )
            )
    key = store.pinned_key()
    return StoreStatus(
        lines=tuple(lines),
        objects=len(sizes),
        stored_bytes=sum(sizes.values()),
        publisher=key.fingerprint if key else None,
        downloading=tuple(downloading),
    )
