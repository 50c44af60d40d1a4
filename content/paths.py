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

import re
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


# A backslash, C0 and C1 controls and DEL, found by one regex scan (a manifest of 100,000
# files is checked at every sync: a Python test per character took 0.6 s of it).
_BAD_CHAR = re.compile(r"[\\\x00-\x1f\x7f-\x9f]")


def check_path(path: str) -> str:
    """Return ``path`` unchanged if it is a safe bundle path, else raise UnsafePathError."""
    if not isinstance(path, str) or not path:
        raise UnsafePathError("empty path in file list")
    if path.startswith("/"):
        raise UnsafePathError(f"absolute path {path[:200]!r} is not allowed")
    if _BAD_CHAR.search(path):
        raise UnsafePathError(f"path {path[:200]!r} contains a backslash or a control character")
    ascii_only = path.isascii()  # then one byte a character, valid and NFC: the usual case
    size = len(path) if ascii_only else len(path.encode("utf-8", "surrogatepass"))
    if size > MAX_PATH_BYTES:
        raise UnsafePathError(f"path {path[:200]!r}... is longer than {MAX_PATH_BYTES} bytes")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(f"path {path[:200]!r} has an empty, '.' or '..' component")
        # At most 4 bytes a character: only a long component needs encoding to be measured.
        if (
            len(part) * 4 > MAX_COMPONENT_BYTES
            and (len(part) if ascii_only else len(part.encode("utf-8", "surrogatepass")))
            > MAX_COMPONENT_BYTES
        ):
            raise UnsafePathError(
                f"path {path[:200]!r} has a component over {MAX_COMPONENT_BYTES} bytes"
            )
    if not ascii_only:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise UnsafePathError(f"path {path[:200]!r} is not valid Unicode") from None
        if not unicodedata.is_normalized("NFC", path):
            raise UnsafePathError(f"path {path[:200]!r} is not in Unicode NFC form")
    return path


def check_tree(paths: Iterable[str]) -> None:
    """Check every path and the relations between them (duplicates, case clashes, file/folder)."""
    seen: dict[str, str] = {}
    for path in paths:
        check_path(path)
        key = path.casefold()
        if key in seen:
            if seen[key] == path:
                raise UnsafePathError(f"path {path!r} appears twice")
            raise UnsafePathError(f"paths {seen[key]!r} and {path!r} differ only by case")
        seen[key] = path
    for key in seen:
        # Each folder above the file, by slicing at every "/" (no list of parts to join).
        cut = key.find("/")
        while cut != -1:
            if key[:cut] in seen:
                raise UnsafePathError(
                    f"{seen[key[:cut]]!r} is a file and also a folder in the tree"
                )
            cut = key.find("/", cut + 1)


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
