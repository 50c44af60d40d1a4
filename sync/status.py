"""What a store holds, read offline: for ``satchel status`` and the viewer.

For each bundle line: the current version, the versions kept, the size of the current tree,
whether every object of it is on disk (of the selection, after ``sync --only``) and what is
not on this laptop, and whether the last release index this store accepted names a newer
version (a sync that stopped at a data budget, or was cut, leaves one pending) with what it
would still cost when that is known offline (its manifest is here).
"""

from __future__ import annotations

from dataclasses import dataclass

from satchel.content.errors import SatchelError
from satchel.content.index import IndexEntry, parse_index
from satchel.content.manifest import Manifest

from .local import LocalStore, Ref
from .plan import missing
from .select import needed_objects, selected_files


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


@dataclass(frozen=True, slots=True)
class StoreStatus:
    lines: tuple[LineStatus, ...]
    objects: int
    stored_bytes: int
    publisher: str | None  # fingerprint of the pinned key


def _update_bytes(store: LocalStore, ref: Ref, entry: IndexEntry | None) -> int | None:
    """Raw bytes of the chunks a pending version still needs, if its manifest is here."""
    if entry is None or entry.version <= ref.version:
        return None
    try:
        manifest = store.load_manifest(entry.manifest)
    except SatchelError:
        return None  # not fetched yet: only a dry run (satchel sync --dry-run) can tell
    wanted = needed_objects(manifest, selected_files(manifest, ref.only))
    return sum(n for _, n in missing(wanted, store.objects))


def _presence(store: LocalStore, manifest: Manifest) -> tuple[int, int]:
    """(files whose chunks are all here, bytes of the files that are not)."""
    here = absent = 0
    objects = store.objects
    for entry in manifest.files:
        if all(objects.has(cid) for cid, _ in entry.chunks):
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
    lines = []
    for ref in store.refs():
        manifest = store.load_manifest(ref.manifest)
        wanted = needed_objects(manifest, selected_files(manifest, ref.only))
        newest = latest.get((ref.bundle, ref.locale))
        here, absent = _presence(store, manifest)
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
                objects_missing=len(missing(wanted, store.objects)),
                pending_version=(
                    newest.version if newest is not None and newest.version > ref.version else None
                ),
                only=ref.only,
                files_here=here,
                bytes_not_here=absent,
                update_bytes=_update_bytes(store, ref, newest),
            )
        )
    ids = list(store.objects)
    key = store.pinned_key()
    return StoreStatus(
        lines=tuple(lines),
        objects=len(ids),
        stored_bytes=sum(store.objects.stored_size(cid) for cid in ids),
        publisher=key.fingerprint if key else None,
    )
