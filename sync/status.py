"""What a store holds, read offline: for ``satchel status`` and the viewer.

For each bundle line: the current version, the versions kept, the size of the current tree,
whether every object of it is on disk, and whether the last release index this store accepted
names a newer version (a sync that stopped at a data budget, or was cut, leaves one pending).
"""

from __future__ import annotations

from dataclasses import dataclass

from satchel.content.errors import SatchelError
from satchel.content.index import parse_index

from .local import LocalStore
from .plan import missing


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


@dataclass(frozen=True, slots=True)
class StoreStatus:
    lines: tuple[LineStatus, ...]
    objects: int
    stored_bytes: int
    publisher: str | None  # fingerprint of the pinned key


def store_status(store: LocalStore) -> StoreStatus:
    latest: dict[tuple[str, str], int] = {}
    raw = store.last_index()
    if raw is not None:
        try:
            for entry in parse_index(raw)[1].entries:
                latest[(entry.bundle, entry.locale)] = entry.version
        except SatchelError:
            latest = {}  # a damaged index file only loses the "pending" column
    lines = []
    for ref in store.refs():
        manifest = store.load_manifest(ref.manifest)
        distinct = manifest.distinct_chunks()
        newest = latest.get((ref.bundle, ref.locale))
        lines.append(
            LineStatus(
                bundle=ref.bundle,
                locale=ref.locale,
                version=ref.version,
                versions=tuple(sorted(ref.versions)),
                title=manifest.title,
                files=len(manifest.files),
                size=manifest.size,
                objects=len(distinct),
                objects_missing=len(missing(distinct, store.objects)),
                pending_version=newest if newest is not None and newest > ref.version else None,
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
