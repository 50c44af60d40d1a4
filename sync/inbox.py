"""Sealed batches and receipts kept in a folder: a relay's inbox, or a USB stick.

Layout (a relay uses ``STORE/inbox/``, a stick its own root)::

    records/<batch id>.sealed     sealed batches, opaque (:mod:`satchel.content.batch`)
    receipts/<device id>.receipt  the newest signed receipt for each device
    done.txt                      (relay) ids of batches the server said it is done with

Whoever keeps the folder cannot read a batch (sealed to the server) and cannot forge a receipt
(signed by the publisher). So nothing here is trusted: a batch file is checked against its
name (SHA-256) and its header's length before it is handed on; a receipt is verified under
the pinned publisher key before it is kept and again by the laptop that applies it.

Hostile sticks are normal: only regular files are read (links are never followed, neither
for the two folders nor for files in them), names must be exactly ``<64 hex>.sealed`` or
``.receipt``, every file is size-checked from ``fstat`` before it is read, and listings stop
at a bound. Writes are durable (temp file, fsync, rename, fsync the folder).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from satchel.content.batch import HEADER_SIZE, MAX_SEALED_BYTES, batch_id, read_header
from satchel.content.errors import (
    FormatError,
    IntegrityError,
    NotFoundError,
    SatchelError,
    StoreError,
)
from satchel.content.manifest import check_chunk_id
from satchel.content.receipts import (
    MAX_RECEIPT_BYTES,
    Receipt,
    RecordsAnswer,
    verify_answer,
    verify_receipt,
)
from satchel.content.signing import PublicKey

from .fsutil import write_atomic

RECORDS_DIR = "records"
RECEIPTS_DIR = "receipts"
DONE_FILE = "done.txt"
MAX_FOLDER_BATCHES = 10_000
MAX_FOLDER_BYTES = 1024 * 1024 * 1024
MAX_FOLDER_RECEIPTS = 10_000
MAX_DONE = 100_000  # batch ids remembered as finished (64 hex + newline each: 6.5 MB)

_SEALED = re.compile(r"([0-9a-f]{64})\.sealed")
_RECEIPT = re.compile(r"([0-9a-f]{64})\.receipt")


@dataclass(frozen=True, slots=True)
class HeldReceipt:
    receipt: Receipt
    data: bytes


class BatchFolder:
    """Sealed batches and receipts in ``root`` (created on first write)."""

    def __init__(
        self,
        root: Path,
        *,
        durable: bool = True,
        max_batches: int = MAX_FOLDER_BATCHES,
        max_bytes: int = MAX_FOLDER_BYTES,
    ) -> None:
        self.root = root
        self.durable = durable
        self.max_batches = max_batches
        self.max_bytes = max_bytes

    # -- folders --------------------------------------------------------------------------
    def _dir(self, name: str, *, create: bool) -> Path | None:
        """``root/name`` if it is a real folder (never a link); created when asked."""
        path = self.root / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                return None
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create {path}: {exc.strerror}") from None
            st = os.lstat(path)
        except OSError as exc:
            raise StoreError(f"cannot use {path}: {exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise FormatError(f"{path} is not a plain folder (a link or a file); refusing it")
        return path

    def _scan(self, name: str, pattern: re.Pattern[str], limit: int) -> list[tuple[str, int]]:
        """(id, size) of regular files named by ``pattern``, at most ``limit`` of them."""
        folder = self._dir(name, create=False)
        if folder is None:
            return []
        found: list[tuple[str, int]] = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    match = pattern.fullmatch(entry.name)
                    if match is None or not entry.is_file(follow_symlinks=False):
                        continue
                    if len(found) >= limit:
                        raise FormatError(
                            f"{folder} holds more than {limit:,} files; refusing to read it all"
                        )
                    found.append((match.group(1), entry.stat(follow_symlinks=False).st_size))
        except OSError as exc:
            raise StoreError(f"cannot list {folder}: {exc.strerror}") from None
        return sorted(found)

    def _read(self, path: Path, max_bytes: int, what: str) -> bytes:
        """A regular file's bytes, opened without following a link, size-checked first."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise NotFoundError(f"{what} is not in {path.parent}") from None
        except OSError as exc:
            raise FormatError(f"{what} cannot be opened ({exc.strerror}); a link?") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise FormatError(f"{what} is not a regular file")
            if st.st_size > max_bytes:
                raise FormatError(f"{what} is {st.st_size:,} bytes, over the {max_bytes:,} limit")
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise FormatError(f"{what} grew past the {max_bytes:,}-byte limit while read")
        return data

    # -- batches --------------------------------------------------------------------------
    def batch_ids(self) -> list[str]:
        """Ids of the sealed batches held (regular files with well-formed names only)."""
        return [bid for bid, _ in self._scan(RECORDS_DIR, _SEALED, self.max_batches)]

    def has_batch(self, bid: str) -> bool:
        try:
            st = os.lstat(self.root / RECORDS_DIR / f"{check_chunk_id(bid)}.sealed")
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode)

    def read_batch(self, bid: str) -> bytes:
        """A held batch, checked against its id and its header (never trusted as stored)."""
        check_chunk_id(bid)
        path = self.root / RECORDS_DIR / f"{bid}.sealed"
        data = self._read(path, MAX_SEALED_BYTES, f"sealed batch {bid[:16]}...")
        if batch_id(data) != bid:
            raise IntegrityError(f"sealed batch {bid[:16]}... does not match its name (damaged)")
        head = read_header(data)
        if head.total != len(data):
            raise IntegrityError(f"sealed batch {bid[:16]}... is cut short or padded")
        return data

    def put_batch(self, sealed: bytes) -> str | None:
        """Keep a sealed batch (durably) and return its id; None if already held.

        Only the frame is checked (header, size); what is inside only the server can open.
        """
        head = read_header(sealed[:HEADER_SIZE])
        if head.total != len(sealed):
            raise FormatError(
                f"sealed batch is {len(sealed):,} bytes, its header declares {head.total:,}"
            )
        bid = batch_id(sealed)
        held = self._scan(RECORDS_DIR, _SEALED, self.max_batches)
        if any(b == bid for b, _ in held):
            return None
        if len(held) >= self.max_batches or sum(s for _, s in held) + len(sealed) > self.max_bytes:
            raise StoreError(
                f"{self.root / RECORDS_DIR} is full ({len(held):,} batches); forward them first"
            )
        folder = self._dir(RECORDS_DIR, create=True)
        assert folder is not None
        write_atomic(folder / f"{bid}.sealed", sealed, durable=self.durable)
        return bid

    def remove_batches(self, ids: Iterable[str]) -> int:
        """Delete the named batches that are held; returns how many were."""
        folder = self._dir(RECORDS_DIR, create=False)
        if folder is None:
            return 0
        removed = 0
        for bid in ids:
            try:
                (folder / f"{check_chunk_id(bid)}.sealed").unlink()
                removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(f"cannot delete a batch in {folder}: {exc.strerror}") from None
        return removed

    # -- receipts -------------------------------------------------------------------------
    def receipt(self, device: str, publisher: PublicKey) -> HeldReceipt | None:
        """The held receipt for ``device``, verified (None if none, or if it does not verify)."""
        path = self.root / RECEIPTS_DIR / f"{check_chunk_id(device)}.receipt"
        if self._dir(RECEIPTS_DIR, create=False) is None:
            return None
        try:
            data = self._read(path, MAX_RECEIPT_BYTES, "receipt")
            receipt = verify_receipt(data, publisher)
        except NotFoundError:
            return None
        except SatchelError:
            return None  # a damaged or forged file is no receipt; a good one replaces it
        if receipt.device != device:
            return None
        return HeldReceipt(receipt, data)

    def receipts(self, publisher: PublicKey) -> list[HeldReceipt]:
        """Every held receipt that verifies under ``publisher`` (others are skipped)."""
        out: list[HeldReceipt] = []
        for device, _ in self._scan(RECEIPTS_DIR, _RECEIPT, MAX_FOLDER_RECEIPTS):
            held = self.receipt(device, publisher)
            if held is not None:
                out.append(held)
        return out

    def put_receipt(self, data: bytes, publisher: PublicKey) -> Receipt | None:
        """Verify a receipt and keep it if it is the newest for its device (else None)."""
        receipt = verify_receipt(data, publisher)
        held = self.receipt(receipt.device, publisher)
        if held is not None and held.receipt.acked_through >= receipt.acked_through:
            return None
        if held is None and len(self._scan(RECEIPTS_DIR, _RECEIPT, MAX_FOLDER_RECEIPTS)) >= (
            MAX_FOLDER_RECEIPTS
        ):
            raise StoreError(f"{self.root / RECEIPTS_DIR} holds the most receipts it may")
        folder = self._dir(RECEIPTS_DIR, create=True)
        assert folder is not None
        write_atomic(folder / f"{receipt.device}.receipt", data, durable=self.durable)
        return receipt


class RelayInbox(BatchFolder):
    """A relay's inbox (``STORE/inbox``): batches to forward, receipts to hand back.

    A batch leaves only when a signed answer from the server names it (accepted, or refused
    for good); its id is then remembered in ``done.txt`` (the newest 100,000), so the same
    stick imported again does not queue it a second time.
    """

    _done_seen: tuple[int, int] | None = None
    _done_ids: frozenset[str] = frozenset()

    def done(self) -> frozenset[str]:
        """Ids of batches the server said it is finished with (the newest MAX_DONE).

        Read again only when ``done.txt`` changed: a stick of many batches asks per batch.
        """
        try:
            st = os.stat(self.root / DONE_FILE)
            seen: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = None
        if seen != self._done_seen:
            self._done_ids = frozenset(self._done_lines())
            self._done_seen = seen
        return self._done_ids

    def put_batch(self, sealed: bytes) -> str | None:
        if batch_id(sealed) in self.done():
            return None
        return super().put_batch(sealed)

    def to_forward(self) -> list[str]:
        """Ids of the batches to send to the server on the next sync."""
        return self.batch_ids()

    def apply_answer(self, data: bytes, publisher: PublicKey) -> RecordsAnswer:
        """Verify the server's signed answer, then drop the batches it is finished with."""
        answer = verify_answer(data, publisher)
        finished = answer.finished
        if finished:
            known = [line for line in self._done_lines() if line not in finished]
            kept = (known + sorted(finished))[-MAX_DONE:]
            write_atomic(
                self.root / DONE_FILE,
                "".join(f"{x}\n" for x in kept).encode(),
                durable=self.durable,
            )
            self._done_seen = None  # read again next time (the mtime may not have moved)
            self.remove_batches(finished)
        return answer

    def _done_lines(self) -> list[str]:
        path = self.root / DONE_FILE
        if not path.exists():
            return []
        data = self._read(path, MAX_DONE * 65 + 65, DONE_FILE)
        return [x for x in data.decode("ascii", "replace").split() if len(x) == 64]

    def keep_receipts(self, receipts: Iterable[bytes], publisher: PublicKey) -> int:
        """Keep the receipts the server sent (verified, newest per device); returns how many
        were newer than those held."""
        return sum(1 for data in receipts if self.put_receipt(data, publisher) is not None)
