"""Paths inside a bundle: relative, normalized, and impossible to escape the checkout folder.

Every path in a manifest passes :func:`check_path`, and a whole file list passes
:func:`check_tree`, before anything is written to disk. The rules:

- POSIX separators only; no backslash, NUL or control characters;
- relative: no leading '/', and no empty, '.' or '..' components;
- Unicode NFC (what a teacher's Mac and a student's Linux laptop agree on);
- at most 1,024 UTF-8 bytes in all and 255 per component;
- within one tree no two paths that differ only by case (they clash on Windows and macOS),
  and no file that is also the parent folder of another file.

What is *published* must also fit on FAT/exFAT (USB sticks) and NTFS (Windows laptops):
:func:`check_portable` refuses ``? : " | < > *``, names Windows reserves for devices (``CON``,
``PRN``, ``AUX``, ``NUL``, ``COM1``-``COM9``, ``LPT1``-``LPT9``, with or without an extension,
in any case) and names ending in a dot or a space. Only publishing applies it
(:func:`check_publish_tree`): manifests signed before the rule still parse and sync, so a
laptop is never cut off from a version it could read before (see docs/security.md).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from .errors import UnsafePathError

# A checkout's marker (see satchel.sync.checkout): a publisher skips it, a draft may not hold it.
CHECKOUT_MARKER = ".satchel-checkout.json"
MAX_PATH_BYTES = 1024
MAX_COMPONENT_BYTES = 255
NOT_ON_FAT = frozenset('?:"|<>*')  # backslash and control characters: check_path refuses them
_DIGITS = "123456789\u00b9\u00b2\u00b3"  # Windows also reserves COM¹..COM³, LPT¹..LPT³
RESERVED_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{dev}{d}" for dev in ("COM", "LPT") for d in _DIGITS]
)


def check_path(path: str) -> str:
    """Return ``path`` unchanged if it is a safe bundle path, else raise UnsafePathError."""
    if not isinstance(path, str) or not path:
        raise UnsafePathError("empty path in file list")
    shown = repr(path[:200])
    if path.startswith("/"):
        raise UnsafePathError(f"absolute path {shown} is not allowed")
    if any(ch == "\\" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in path):
        raise UnsafePathError(f"path {shown} contains a backslash or a control character")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise UnsafePathError(f"path {shown}... is longer than {MAX_PATH_BYTES} bytes")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(f"path {shown} has an empty, '.' or '..' component")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            raise UnsafePathError(f"path {shown} has a component over {MAX_COMPONENT_BYTES} bytes")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePathError(f"path {shown} is not valid Unicode") from None
    if unicodedata.normalize("NFC", path) != path:
        raise UnsafePathError(f"path {shown} is not in Unicode NFC form")
    return path


def check_tree(paths: Iterable[str]) -> None:
    """Check every path and the relations between them (duplicates, case clashes, file/folder)."""
    seen: dict[str, str] = {}
    files: set[str] = set()
    for path in paths:
        check_path(path)
        key = path.casefold()
        if key in seen:
            if seen[key] == path:
                raise UnsafePathError(f"path {path!r} appears twice")
            raise UnsafePathError(f"paths {seen[key]!r} and {path!r} differ only by case")
        seen[key] = path
        files.add(key)
    for key in files:
        parts = key.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in files:
                raise UnsafePathError(f"{seen[parent]!r} is a file and also a folder in the tree")


def to_bundle_path(relative_parts: Iterable[str]) -> str:
    """Join OS path components into a normalized bundle path (NFC), checked."""
    return check_path(unicodedata.normalize("NFC", "/".join(relative_parts)))


def portable_problem(path: str) -> str | None:
    """Why FAT/exFAT/NTFS cannot hold ``path`` (a path :func:`check_path` accepts), or None."""
    for part in path.split("/"):
        bad = sorted(set(part) & NOT_ON_FAT)
        if bad:
            return f"{part[:80]!r} contains {' '.join(bad)}"
        if part.endswith((".", " ")):
            return f"{part[:80]!r} ends with a dot or a space"
        # "CON", "con.txt", "Aux.tar.gz": the device name is what comes before the first dot,
        # with trailing spaces ignored (Windows strips them).
        if part.split(".", 1)[0].rstrip(" ").upper() in RESERVED_NAMES:
            return f"{part[:80]!r} is a name Windows reserves for a device"
    return None


def check_portable(path: str) -> str:
    """Return ``path`` if USB sticks (FAT/exFAT) and Windows (NTFS) can hold it, else raise."""
    check_path(path)
    why = portable_problem(path)
    if why is not None:
        raise UnsafePathError(
            f"path {path[:200]!r}: {why}, which USB sticks (FAT/exFAT) and Windows laptops"
            " (NTFS) cannot hold; rename it"
        )
    return path


def check_publish_tree(paths: Iterable[str]) -> None:
    """:func:`check_tree` plus :func:`check_portable` on each path: the rule for a new version."""
    listed = list(paths)
    check_tree(listed)
    for path in listed:
        check_portable(path)
        if path == CHECKOUT_MARKER:
            raise UnsafePathError(f"{path!r} is the name checkout keeps for its marker; rename it")
