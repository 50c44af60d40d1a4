"""A laptop's device key: the Ed25519 key that signs the learning records this store keeps.

``STORE/device-key.pem`` (PKCS#8 PEM, mode 0600) is created the first time a store needs it
and never replaced in place: it is written to a temp file, fsynced, then hard-linked to its
name (which fails if another process made one first; that one is used) and the folder
fsynced, so a crash leaves either no key or a whole one. The device id is the key id:
SHA-256 of the raw public key, hex (:class:`~satchel.content.signing.PublicKey`).

A retired key (see :mod:`satchel.sync.outbox`: a store whose records database was lost gets
a new device identity, so that new records never reuse numbers the server already holds) is
kept beside it as ``device-key.<first 16 hex of its id>.retired.pem``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from satchel.content.errors import FormatError, StoreError
from satchel.content.signing import SigningKey

from .fsutil import fsync_dir

DEVICE_KEY_FILE = "device-key.pem"


def device_key_path(root: Path) -> Path:
    return root / DEVICE_KEY_FILE


def load_device_key(root: Path) -> SigningKey | None:
    """The store's device key, or None when it has none yet."""
    path = device_key_path(root)
    if not path.exists():
        return None
    try:
        return SigningKey.load(path)
    except FormatError as exc:
        raise StoreError(
            f"{DEVICE_KEY_FILE} in the store is damaged ({exc}); restore it from a backup"
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot read {DEVICE_KEY_FILE}: {exc.strerror}") from None


def load_or_create_device_key(root: Path, *, durable: bool = True) -> SigningKey:
    """The store's device key, created (durably, mode 0600) if it has none."""
    key = load_device_key(root)
    if key is not None:
        return key
    key = SigningKey.generate()
    path = device_key_path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-", suffix=".part")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(key.pem())
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another process made one first: use it
                os.link(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        if durable:
            fsync_dir(root)
    except OSError as exc:
        raise StoreError(f"cannot create {DEVICE_KEY_FILE} in {root}: {exc.strerror}") from None
    loaded = load_device_key(root)
    assert loaded is not None
    return loaded


def retire_device_key(root: Path, *, durable: bool = True) -> None:
    """Move the device key aside (kept, never deleted) so the next use makes a new one."""
    key = load_device_key(root)
    if key is None:
        return
    aside = root / f"device-key.{key.public.keyid[:16]}.retired.pem"
    try:
        os.replace(device_key_path(root), aside)
        if durable:
            fsync_dir(root)
    except OSError as exc:
        raise StoreError(f"cannot retire {DEVICE_KEY_FILE}: {exc.strerror}") from None
