"""Careful file I/O: durable writes (temp file in the same folder, fsync, ``os.replace``, fsync
the folder) and bounded reads of regular files only (for folders an attacker may lay out)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from satchel.content.errors import FormatError


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, durable: bool = True, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def read_regular(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    For files an attacker may have laid out (a USB stick): a link (to ``/dev/zero``, say), a
    FIFO, a device or an oversized file is refused before a byte is read. The name is checked
    with ``lstat``, opened without following links and without blocking, and checked again on
    the open descriptor (the same file, still regular, still small), then read to the limit
    only. ``FileNotFoundError`` passes through; anything else is a :class:`FormatError`.
    """
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise FormatError(f"{what} is unreadable: {exc.strerror}") from None
    check_regular(before, limit, what)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise FormatError(f"{what} is unreadable: {exc.strerror}") from None
    try:
        now = os.fstat(fd)
        check_regular(now, limit, what)
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise FormatError(f"{what} was replaced while being opened; refused")
        pieces: list[bytes] = []
        got = 0
        while got <= limit:
            piece = os.read(fd, min(1 << 20, limit + 1 - got))
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
        if got > limit:
            raise FormatError(f"{what} grew past the {limit:,}-byte limit while being read")
        return b"".join(pieces)
    except OSError as exc:
        raise FormatError(f"{what} is unreadable: {exc.strerror}") from None
    finally:
        os.close(fd)


def open_regular(path: Path, what: str, *, buffered: bool = True) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (never a link, FIFO or device);
    ``buffered=False`` for a reader that seeks between small reads."""
    try:
        before = os.lstat(path)
        check_regular(before, None, what)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise FormatError(f"{what} is unreadable: {exc.strerror}") from None
    try:
        now = os.fstat(fd)
        check_regular(now, None, what)
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise FormatError(f"{what} was replaced while being opened; refused")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=-1 if buffered else 0)
    except BaseException:
        os.close(fd)
        raise


def check_regular(st: os.stat_result, limit: int | None, what: str) -> None:
    """Raise :class:`FormatError` unless ``st`` is a regular file of at most ``limit`` bytes."""
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a link"
            if stat.S_ISLNK(st.st_mode)
            else "a pipe"
            if stat.S_ISFIFO(st.st_mode)
            else "a folder"
            if stat.S_ISDIR(st.st_mode)
            else "a device or socket"
        )
        raise FormatError(f"{what} is {kind}, not a regular file; refused unread")
    if limit is not None and st.st_size > limit:
        raise FormatError(
            f"{what} is {st.st_size:,} bytes, over the {limit:,}-byte limit; refused unread"
        )
