"""Disk care for a laptop's store: free-space checks, one writer at a time, keep N versions,
and the temp folders a killed checkout leaves.

Small disks fill up. Before a sync or import stores anything it checks that the objects it is
about to fetch fit with a reserve to spare, and says how much is needed; a checkout checks the
bytes it will write (a file deduplicated to one stored chunk still takes its whole size on
disk). After a version switches, only the newest N versions of each line are kept, and objects
that no kept version (nor a version still arriving) uses are deleted. Writers (sync, import,
gc, fsck --repair) take the store's lock, so a collection never races a sync; readers (view,
share) need none, because nothing a current version uses is ever deleted.

A checkout builds its tree in a temp folder beside the destination, named
``.NAME.satchel-PID-XXXXXXXX`` (``.NAME.satchel-old-PID-...`` for the folder it swaps out),
and holds an ``flock`` on it while it works. ``kill -9`` leaves that folder behind; the next
checkout to the same place, and every collection (for the destinations the store recorded),
removes folders of exactly that pattern whose process is gone and whose lock nobody holds.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from satchel.content.errors import SatchelError, StoreError
from satchel.content.index import parse_index

from .fsutil import read_regular, write_atomic
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


def check_room_to_write(folder: Path, needed: int, what: str) -> None:
    """Raise :class:`DiskSpaceError` unless ``needed`` bytes can be written under ``folder``."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise StoreError(f"cannot see the free space at {folder}: {exc.strerror}") from None
    if needed > free:
        raise DiskSpaceError(
            f"{what} writes {_mb(needed)} but only {_mb(free)} are free on the disk of {folder};"
            f" free {_mb(needed - free)} or check out fewer files (sync --only); nothing was"
            " written"
        )


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


# -- checkout temp folders ----------------------------------------------------------------------
CHECKOUTS_FILE = "checkouts.json"  # in the store: where checkouts from it were written
MAX_RECORDED_CHECKOUTS = 64


def checkout_temp_prefix(dest: Path, *, old: bool = False) -> str:
    """The name prefix of a checkout's temp folders beside ``dest`` (``mkdtemp`` adds 8)."""
    return f".{dest.name}.satchel-{'old-' if old else ''}{os.getpid()}-"


def hold_folder(path: Path) -> int:
    """Lock ``path`` (a folder this process made) for as long as the returned fd is open."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or a number no pid can be
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale_checkout_temps(dest: Path) -> int:
    """Remove the temp folders killed checkouts to ``dest`` left; returns how many.

    Only folders of the checkout's own pattern, only real folders (never through a link), only
    when the process that made them is gone and nobody holds their lock.
    """
    parent = dest.parent
    pattern = re.compile(rf"\.{re.escape(dest.name)}\.satchel-(?:old-)?(\d{{1,10}})-[a-z0-9_]{{8}}")
    try:
        names = os.listdir(parent)
    except OSError:
        return 0
    removed = 0
    for name in names:
        m = pattern.fullmatch(name)
        if m is None or _alive(int(m.group(1))):
            continue
        path = parent / name
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                continue
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live checkout (in another pid namespace, say) holds it
            shutil.rmtree(path, ignore_errors=True)
            removed += 0 if path.exists() else 1
        finally:
            os.close(fd)
    return removed


def record_checkout(store: LocalStore, dest: Path) -> None:
    """Remember ``dest`` so a collection can tidy after a checkout killed there (best effort)."""
    where = str(dest.absolute())
    known = [str(p) for p in recorded_checkouts(store) if str(p) != where]
    doc = {"checkouts": [where, *known][:MAX_RECORDED_CHECKOUTS]}
    # A read-only store still checks out; only the later tidying is lost.
    with suppress(OSError):
        write_atomic(store.root / CHECKOUTS_FILE, json.dumps(doc).encode(), durable=False)


def recorded_checkouts(store: LocalStore) -> list[Path]:
    try:
        raw = json.loads(read_regular(store.root / CHECKOUTS_FILE, 256 * 1024, CHECKOUTS_FILE))
    except (OSError, ValueError, SatchelError):
        return []
    listed = raw.get("checkouts") if isinstance(raw, dict) else None
    if not isinstance(listed, list):
        return []
    return [Path(p) for p in listed if isinstance(p, str) and os.path.isabs(p)]


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
    checkout_temps_removed: int = 0  # folders killed checkouts left beside their destination
    object_temps_removed: int = 0  # temp files a killed sync or import left in the store


def _pending_manifests(store: LocalStore) -> set[str]:
    """Manifests the last accepted index names that a sync has fetched: it may be (or have
    stopped, at a data budget) fetching their objects, for a held line or a new one."""
    pending = set()
    for bundle, locale in store.indexed_lines():
        raw = store.last_index(bundle, locale)
        try:
            entry = parse_index(raw)[1].line if raw is not None else None
        except SatchelError:
            continue  # a damaged index only costs that line's protection
        if entry is not None and store.manifest_bytes(entry.manifest) is not None:
            pending.add(entry.manifest)
    return pending


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
    result.object_temps_removed = objects.sweep_temp()  # the writer lock is held: all are orphans
    for cid in list(objects):
        if cid not in live:
            result.bytes_freed += objects.stored_size(cid)
            objects.delete(cid)
            result.objects_deleted += 1
    for manifest_id in store.manifest_ids():
        if manifest_id not in live_manifests:
            store.delete_manifest(manifest_id)
            result.manifests_deleted += 1
    for dest in recorded_checkouts(store):
        result.checkout_temps_removed += remove_stale_checkout_temps(dest)
    return result
