"""Materialize a stored version as a plain folder, atomically and without trusting the disk.

Files are assembled in a fresh temp folder beside the destination, each chunk re-verified
against its id (a rotten disk block is caught here, not shown to a student), then the folder
is swapped in with renames. Paths were checked when the manifest was parsed; each one is
checked again to resolve inside the temp folder before it is written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from satchel.content.errors import StoreError, UnsafePathError
from satchel.content.manifest import FileEntry, Manifest
from satchel.content.objects import verify_object

from .store import ChunkStore, store_lookup


def write_tree(
    manifest: Manifest,
    store: ChunkStore,
    folder: Path,
    files: Sequence[FileEntry] | None = None,
) -> None:
    """Write every file of ``manifest`` (or only ``files``, after a selective sync) under
    ``folder`` (which must exist and be empty)."""
    lookup = store_lookup(store, dict(manifest.dictionaries))
    real = folder.resolve()
    for entry in manifest.files if files is None else files:
        target = folder / entry.path
        if not target.resolve().is_relative_to(real):
            raise UnsafePathError(f"{entry.path!r} would land outside the checkout folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as f:  # "x": never follow or overwrite something already there
            for cid, length in entry.chunks:
                f.write(verify_object(store.get(cid), cid, length, lookup))
        os.chmod(target, entry.mode)


def checkout(
    manifest: Manifest,
    store: ChunkStore,
    dest: Path,
    files: Sequence[FileEntry] | None = None,
) -> None:
    """Replace ``dest`` with the tree of ``manifest`` (or only ``files`` of it); on any error
    ``dest`` is left as it was."""
    dest = dest.absolute()
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{dest.name}.satchel-"))
    except OSError as exc:
        raise StoreError(f"cannot create {parent}: {exc.strerror}") from None
    try:
        write_tree(manifest, store, tmp, files)
        os.chmod(tmp, 0o755)
        if dest.exists() or dest.is_symlink():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{dest.name}.old-"))
            os.replace(dest, old / "x")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
