"""Disk care for a laptop's store: free-space checks, one writer at a time, keep N versions.

Small disks fill up. Before a sync or import stores anything it checks that the objects it is
about to fetch fit with a reserve to spare, and says how much is needed. After a version
switches, only the newest N versions of each line are kept, and objects that no kept version
(nor a version still arriving) uses are deleted. Writers (sync, import, gc, fsck --repair)
take the store's lock, so a collection never races a sync; readers (view, share) need none,
because nothing a current version uses is ever deleted.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from satchel.content.errors import SatchelError, StoreError
from satchel.content.index import parse_index

from .local import LocalStore
from .select import needed_objects, selected_files

DEFAULT_KEEP = 2  # the current version and the one before it
DEFAULT_RESERVE = 50 * 1000 * 1000  # left free for the rest of the laptop


class DiskSpaceError(StoreError):
    """Not enough free space to store what a sync or import would bring."""


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def check_free_space(store: LocalStore, needed: int, reserve: int, what: str) -> None:
    """Raise :class:`DiskSpaceError` unless ``needed`` bytes fit with ``reserve`` to spare."""
    free = shutil.disk_usage(store.root).free
    if needed + reserve > free:
        raise DiskSpaceError(
            f"{what} needs up to {_mb(needed)} but only {_mb(free)} are free on the store's disk"
            f" (keeping {_mb(reserve)} in reserve); free {_mb(needed + reserve - free)} or sync"
            " fewer lessons with --only"
        )


@contextmanager
def writer_lock(store: LocalStore) -> Iterator[None]:
    """Hold the store's write lock (advisory, released if the process dies)."""
    path = store.root / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(
                f"another satchel command (sync, import or gc) is writing to {store.root};"
                " try again when it has finished"
            ) from None
        yield
    finally:
        os.close(fd)  # closing drops the lock


@dataclass
class GcResult:
    versions_dropped: list[str] = field(default_factory=list)  # "bundle/locale vN"
    objects_deleted: int = 0
    bytes_freed: int = 0
    manifests_deleted: int = 0


def _pending_manifests(store: LocalStore) -> set[str]:
    """Manifests the last accepted index names that a sync has fetched: it may be (or have
    stopped, at a data budget) fetching their objects, for a held line or a new one."""
    raw = store.last_index()
    if raw is None:
        return set()
    try:
        entries = parse_index(raw)[1].entries
    except SatchelError:
        return set()
    return {e.manifest for e in entries if store.manifest_bytes(e.manifest) is not None}


def collect_garbage(store: LocalStore, keep: int = DEFAULT_KEEP) -> GcResult:
    """Keep the newest ``keep`` versions of each line; delete what nothing kept uses.

    Call with the writer lock held. A selective copy keeps only its selection's objects, so
    narrowing ``--only`` and collecting frees the space the rest used.
    """
    if keep < 1:
        raise StoreError("keep at least 1 version (the current one)")
    result = GcResult()
    refs = store.refs()
    live_manifests: set[str] = set()
    live: set[str] = set()
    for ref in refs:
        newest = sorted(ref.versions, reverse=True)[:keep]
        kept = {v: ref.versions[v] for v in ref.versions if v in newest or v == ref.version}
        for v in sorted(set(ref.versions) - set(kept)):
            result.versions_dropped.append(f"{ref.bundle}/{ref.locale} v{v}")
        if len(kept) != len(ref.versions):
            store.prune_versions(ref, kept)
        for manifest_id in kept.values():
            live_manifests.add(manifest_id)
            manifest = store.load_manifest(manifest_id)
            files = selected_files(manifest, ref.only)
            live.update(cid for cid, _ in needed_objects(manifest, files))
    for manifest_id in _pending_manifests(store) - live_manifests:
        try:
            manifest = store.load_manifest(manifest_id)
        except SatchelError:
            continue
        live_manifests.add(manifest_id)
        live.update(cid for cid, _ in manifest.distinct_chunks())
    objects = store.objects
    for cid in list(objects):
        if cid not in live:
            result.bytes_freed += objects.stored_size(cid)
            objects.delete(cid)
            result.objects_deleted += 1
    for manifest_id in store.manifest_ids():
        if manifest_id not in live_manifests:
            store.delete_manifest(manifest_id)
            result.manifests_deleted += 1
    return result
