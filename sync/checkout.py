"""Materialize a stored version as a plain folder: safely, atomically, re-verifying every chunk.

:func:`checkout_line` holds the rules of ``satchel checkout`` (which version, which files of a
selective sync); :func:`checkout` writes one manifest's tree.

A checkout replaces its destination whole, so the destination must be new, an empty folder,
or an earlier checkout of the same bundle and locale (it carries a small marker file,
``.satchel-checkout.json``, naming them); never a file, another folder's contents, or a
folder inside or above the store (links resolved), which would delete the store and its
pinned key. The bytes it writes (every file at its full size, however deduplicated in the
store) must fit on the destination's disk before anything is written.

Files are assembled in a fresh temp folder beside the destination, each chunk re-verified
against its id (a rotten disk block is caught here, not shown to a student), then the folder
is swapped in with renames. Paths were checked when the manifest was parsed; each one is
checked again to resolve inside the temp folder before it is written. A disk that fills anyway
names the file it stopped at. Temp folders that a killed checkout left are removed by the next
one (see :mod:`satchel.sync.care`).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from satchel.content.errors import (
    NotFoundError,
    SatchelError,
    StoreError,
    UnsafePathError,
    UsageError,
)
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.objects import verify_object
from satchel.content.paths import CHECKOUT_MARKER

from .care import (
    DiskSpaceError,
    check_room_to_write,
    checkout_temp_prefix,
    hold_folder,
    is_disk_full,
    record_checkout,
    remove_stale_checkout_temps,
)
from .fsutil import read_regular
from .local import LocalStore
from .select import selected_files
from .store import ChunkStore, FolderChunkStore, store_lookup

BLOCK = 4096  # what a file takes on disk is rounded up to blocks of (at least) this size


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    bundle: str
    locale: str
    version: int
    files: int  # files written
    total: int  # files in the version
    only: tuple[str, ...] | None  # a selective sync's selectors (None: every file)


def checkout_line(
    store: LocalStore,
    bundle: str,
    locale: str,
    dest: Path,
    version: int | None = None,
) -> CheckoutResult:
    """Write ``version`` (default: the current one) of a line held in ``store`` to ``dest``.

    After a selective sync only the selected files that are on the laptop are written.
    """
    ref = store.ref(bundle, locale)
    if ref is None:
        raise NotFoundError(f"{bundle}/{locale} is not in {store.root}; run satchel sync first")
    wanted = ref.version if version is None else version
    manifest_id = ref.versions.get(wanted)
    if manifest_id is None:
        have = ", ".join(str(v) for v in sorted(ref.versions))
        raise NotFoundError(
            f"version {wanted} of {bundle}/{locale} is not in the store (have {have})"
        )
    manifest = store.load_manifest(manifest_id)
    files: list[FileEntry] | None = None
    if ref.only is not None:
        files = [
            f
            for f in selected_files(manifest, ref.only)
            if all(store.objects.has(cid) for cid, _ in f.chunks)
        ]
    check_target(dest.absolute(), bundle, locale, [store.root])
    record_checkout(store, dest)  # first: a collection may then tidy after a killed checkout
    checkout(manifest, store.objects, dest, files, protect=[store.root])
    written = len(manifest.files) if files is None else len(files)
    return CheckoutResult(bundle, locale, wanted, written, len(manifest.files), ref.only)


def write_tree(
    manifest: Manifest,
    store: ChunkStore,
    folder: Path,
    files: Sequence[FileEntry] | None = None,
    *,
    shown: Path | None = None,
) -> None:
    """Write every file of ``manifest`` (or only ``files``, after a selective sync) under
    ``folder`` (which must exist and be empty). ``shown``: the folder named in errors."""
    lookup = store_lookup(store, dict(manifest.dictionaries))
    real = folder.resolve()
    chosen = manifest.files if files is None else files
    for done, entry in enumerate(chosen):
        target = folder / entry.path
        if not target.resolve().is_relative_to(real):
            raise UnsafePathError(f"{entry.path!r} would land outside the checkout folder")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as f:  # "x": never follow or overwrite something already there
                for cid, length in entry.chunks:
                    f.write(verify_object(store.get(cid), cid, length, lookup))
            os.chmod(target, entry.mode)
        except OSError as exc:
            where = shown or folder
            if is_disk_full(exc):
                raise DiskSpaceError(
                    f"the disk of {where} is full: {entry.path!r} ({entry.size:,} bytes) could"
                    f" not be written ({done} of {len(chosen)} files were); {where} was left as"
                    " it was; free some space and check out again"
                ) from None
            raise StoreError(
                f"cannot write {entry.path!r} under {where}: {exc.strerror}; {where} was left"
                " as it was"
            ) from None


def _write_marker(folder: Path, manifest: Manifest, shown: Path) -> None:
    marker: dict[str, object] = {"satchel": "checkout", "bundle": manifest.bundle}
    marker.update(locale=manifest.locale, version=manifest.version)
    try:
        with open(folder / CHECKOUT_MARKER, "x", encoding="utf-8") as f:
            json.dump(marker, f)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskSpaceError(
                f"the disk of {shown} is full: {CHECKOUT_MARKER} could not be written;"
                f" {shown} was left as it was; free some space and check out again"
            ) from None
        raise StoreError(f"cannot write {CHECKOUT_MARKER} under {shown}: {exc.strerror}") from None


def disk_bytes(files: Sequence[FileEntry]) -> int:
    """What writing ``files`` takes on disk: each at its full size, in whole blocks."""
    return sum(-(-f.size // BLOCK) * BLOCK for f in files) + BLOCK  # + the marker


def read_marker(folder: Path) -> tuple[str, str] | None:
    """(bundle, locale) of the checkout in ``folder``, or None if it is not one."""
    try:
        raw = json.loads(read_regular(folder / CHECKOUT_MARKER, 4096, CHECKOUT_MARKER))
    except (OSError, ValueError, SatchelError):
        return None
    if not isinstance(raw, dict) or raw.get("satchel") != "checkout":
        return None
    bundle, locale = raw.get("bundle"), raw.get("locale")
    if not isinstance(bundle, str) or not isinstance(locale, str):
        return None
    return bundle, locale


def check_target(dest: Path, bundle: str, locale: str, protect: Sequence[Path] = ()) -> None:
    """Raise :class:`UsageError` unless a checkout of ``bundle``/``locale`` may replace ``dest``."""
    if dest.is_symlink():
        raise UsageError(
            f"{dest} is a link; check out to the folder it points to ({dest.resolve()})"
        )
    real = dest.resolve()
    for folder in protect:
        guarded = folder.resolve()
        if real == guarded:
            raise UsageError(
                f"{dest} is the store itself: a checkout replaces its whole folder and would"
                " delete the store (and its pinned key); check out to another folder"
            )
        if real.is_relative_to(guarded):
            raise UsageError(
                f"{dest} is inside the store {folder}; check out to a folder outside the store"
            )
        if guarded.is_relative_to(real):
            raise UsageError(
                f"{dest} holds the store {folder}: a checkout replaces its whole folder and would"
                " delete the store (and its pinned key); check out to another folder"
            )
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(
            f"{dest} is a file, not a folder; check out to a new or empty folder (nothing was"
            " changed)"
        )
    if not os.listdir(dest):
        return
    held = read_marker(dest)
    if held is None:
        raise UsageError(
            f"{dest} is not empty and not an earlier checkout; a checkout replaces the whole"
            " folder, so give a new or empty folder (nothing was changed)"
        )
    if held != (bundle, locale):
        raise UsageError(
            f"{dest} holds a checkout of {held[0]}/{held[1]}, not {bundle}/{locale}; give"
            " another folder (nothing was changed)"
        )


def checkout(
    manifest: Manifest,
    store: ChunkStore,
    dest: Path,
    files: Sequence[FileEntry] | None = None,
    *,
    protect: Sequence[Path] = (),
) -> None:
    """Replace ``dest`` with the tree of ``manifest`` (or only ``files`` of it); on any error
    ``dest`` is left as it was. ``protect``: folders (a store) ``dest`` may be neither inside
    nor above; a folder store's own folder always is."""
    dest = dest.absolute()
    guarded = list(protect)
    if isinstance(store, FolderChunkStore):
        home = store.root.parent
        guarded.append(home if (home / "satchel.json").is_file() else store.root)
    bundle, locale = manifest.bundle, manifest.locale
    check_target(dest, bundle, locale, guarded)
    chosen = manifest.files if files is None else files
    if any(f.path == CHECKOUT_MARKER for f in chosen):
        raise StoreError(
            f"{bundle}/{locale} version {manifest.version} holds a file named {CHECKOUT_MARKER},"
            " the name checkout keeps for its marker; it cannot be checked out"
        )
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {parent}: {exc.strerror}") from None
    remove_stale_checkout_temps(dest)
    what = f"checkout of {bundle}/{locale} version {manifest.version}"
    check_room_to_write(parent, disk_bytes(chosen), what)
    try:
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=checkout_temp_prefix(dest)))
    except OSError as exc:
        raise StoreError(f"cannot create a folder in {parent}: {exc.strerror}") from None
    held = [hold_folder(tmp)]
    try:
        write_tree(manifest, store, tmp, files, shown=dest)
        _write_marker(tmp, manifest, dest)
        os.chmod(tmp, 0o755)
        check_target(dest, bundle, locale, guarded)  # nothing moved in meanwhile
        if os.path.lexists(dest):
            old = Path(tempfile.mkdtemp(dir=parent, prefix=checkout_temp_prefix(dest, old=True)))
            held.append(hold_folder(old))
            os.replace(dest, old / "x")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for fd in held:
            os.close(fd)
